"""The example descriptions against the vendors' own simulators, beside the hand-written plugins.

Each example runs with only `base_url` and its credentials changed, and must store what the
hand-written provider stores from the same simulator data: the same native ids, statuses,
messages, errors, entities and times, with as many requests for an idle poll.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from logd_elasticpath import ElasticPathSimulator
from logd_fleetit import FleetITSimulator
from logd_http import EventsSimulator

from logd.plugin.testing import SyncRun
from logd.store.interface import Row

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str, **changes: Any) -> dict[str, Any]:
    """The example's one `[[sources]]` table with `changes` (dotted keys) applied."""
    [table] = tomllib.loads((EXAMPLES / name).read_text())["sources"]
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = table
        for part in parents:
            node = node[part]
        node[leaf] = value
    return table


def stored(run: SyncRun) -> dict[str, tuple[Any, ...]]:
    """What matters of each stored row, by native id."""

    def key(row: Row) -> tuple[Any, ...]:
        observed = "observed" if _observed(row) else row.timestamp
        return (row.status, row.message, row.error, row.entity_type, row.entity_id, observed)

    return {row.native_id: key(row) for row in run.rows()}


def _observed(row: Row) -> bool:
    """A record without a time of its own: stamped when each run first saw it."""
    raw = row.raw if isinstance(row.raw, dict) else {}
    return not any(key in raw for key in ("meta", "timestamp", "created"))


@pytest.fixture
def fleet() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=250) as sim:
        yield sim


@pytest.fixture
def ep() -> Iterator[ElasticPathSimulator]:
    with ElasticPathSimulator() as sim:
        yield sim


def test_fleetit_example_stores_what_the_fleetit_plugin_stores(
    tmp_path: Path, fleet: FleetITSimulator
) -> None:
    plugin = SyncRun(tmp_path / "plugin", [fleet.demo_source("fleet")])
    described = SyncRun(
        tmp_path / "http",
        [example("fleetit.toml", base_url=fleet.base_url, **{"auth.bearer.token": fleet.token})],
    )
    try:
        assert plugin.sync()["fleet"].ok
        report = described.sync()["fleet-http"]
        assert report.ok, report.error
        assert report.new == 250
        assert stored(described) == stored(plugin)
        assert described.cursor("fleet-http")["watermark"] == plugin.cursor("fleet")["watermark"]

        fleet.add_records(3, failure_rate=1.0)
        fleet.requests.clear()
        assert plugin.sync()["fleet"].new == 3
        by_plugin = len(fleet.requests)
        fleet.requests.clear()
        assert described.sync()["fleet-http"].new == 3
        assert len(fleet.requests) == by_plugin
        assert stored(described) == stored(plugin)
        assert {r.arg("timestamp_after") for r in fleet.requests} != {None}

        # An idle poll: the same requests as the plugin's (the window's pages).
        fleet.requests.clear()
        plugin.sync()
        idle_plugin = len(fleet.requests)
        fleet.requests.clear()
        described.sync()
        assert len(fleet.requests) == idle_plugin
    finally:
        plugin.close()
        described.close()


def test_elasticpath_example_stores_what_the_elasticpath_plugin_stores(
    tmp_path: Path, ep: ElasticPathSimulator
) -> None:
    plugin = SyncRun(tmp_path / "plugin", [ep.demo_source("ep")])
    described = SyncRun(
        tmp_path / "http",
        [
            example(
                "elasticpath.toml",
                base_url=ep.base_url,
                **{
                    "auth.oauth2.client_id": ep.client_id,
                    "auth.oauth2.client_secret": ep.client_secret,
                },
            )
        ],
    )
    try:
        assert plugin.sync()["ep"].ok
        report = described.sync()["ep-http"]
        assert report.ok, report.error
        assert report.new == 250
        assert stored(described) == stored(plugin)

        # An idle (second) poll: one list request each, the token kept from the first.
        ep.requests.clear()
        plugin.sync()
        idle_plugin = len(ep.requests)
        ep.requests.clear()
        described.sync()
        assert len(ep.requests) == idle_plugin == 1

        ep.add_records(2)
        ep.requests.clear()
        assert plugin.sync()["ep"].new == 2
        by_plugin = len(ep.requests)
        ep.requests.clear()
        assert described.sync()["ep-http"].new == 2
        assert len(ep.requests) == by_plugin
        assert stored(described) == stored(plugin)
    finally:
        plugin.close()
        described.close()


def test_events_example_is_the_simulators_demo_source(tmp_path: Path) -> None:
    with EventsSimulator() as sim:
        table = example("events.toml", base_url=sim.base_url, **{"auth.bearer.token": sim.api_key})
        assert {**table, "name": "x", "interval": "30s"} == sim.demo_source("x")
