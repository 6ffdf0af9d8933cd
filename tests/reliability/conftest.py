"""The five providers as the reliability suite sees them: one profile each, one shape.

A test that takes `profile` runs once per provider. A profile makes a small simulator, the
`[[sources]]` table that polls it fast (two attempts, short waits and timeouts), names the
path its log data comes from (where a fault hurts most) and adds records the way the live API
grows, so every test asks the same questions of every provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from logd_akinon import AkinonSimulator
from logd_elasticpath import ElasticPathSimulator
from logd_fleetit import FleetITSimulator
from logd_maestra import MaestraSimulator
from logd_pegasus import PegasusSimulator

from logd.plugin.simulator import Simulator

#: Fast polls: a fault costs two attempts and a tenth of a second of (recorded) waiting.
FAST: dict[str, Any] = {"retry": {"attempts": 2, "max_wait": "0.1s"}, "timeout": "1s"}


@dataclass(frozen=True)
class Profile:
    """How the suite drives one provider's simulator."""

    name: str
    make: Callable[[], Simulator]
    #: The source table beyond `demo_source` (fast settings are added to every profile).
    keys: dict[str, Any] = field(default_factory=dict)
    #: Requests for log data start with this path: faults aimed there hit the paging.
    data_path: str = "/"
    #: Adds `n` records to the simulator as the live API would.
    grow: Callable[[Any, int], object] = lambda sim, n: sim.tick()

    def source(self, sim: Simulator, name: str | None = None, **keys: Any) -> dict[str, Any]:
        """The `[[sources]]` table for `sim`, fast, named after the provider by default."""
        return {**sim.demo_source(name or self.name), **FAST, **self.keys, **keys}


def _recent() -> datetime:
    # Maestra exports end a lag before now: records that old are in the next export.
    return datetime.now(UTC) - timedelta(minutes=5)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "fleetit",
            lambda: FleetITSimulator(records=250),
            data_path="/v2/integrations/logs",
            grow=lambda sim, n: sim.add_records(n),
        ),
        Profile(
            "akinon",
            lambda: AkinonSimulator(
                flows=("flow-orders",), records=150, sub_logs=5, in_progress=0, failure_rate=0.05
            ),
            keys={"log_types": [1, 2], "line_logs": False},
            data_path="/logs",
            grow=lambda sim, n: sim.add_logs(n, flow="flow-orders"),
        ),
        Profile(
            "elasticpath",
            lambda: ElasticPathSimulator(integrations=(130, 80, 40)),
            data_path="/v2/integrations",
            grow=lambda sim, n: sim.add_records(n),
        ),
        Profile(
            "pegasus",
            lambda: PegasusSimulator(records=300),
            data_path="/api/changelogs",
            # A modifications window ends at the last whole second: a changelog written this
            # second is the next poll's.
            grow=lambda sim, n: sim.add_changelogs(n, at=datetime.now(UTC) - timedelta(seconds=2)),
        ),
        Profile(
            "maestra",
            lambda: MaestraSimulator(records=300, ready_after=1),
            # Fast like `timeout`: an export that stays NotReady fails after about ten checks.
            keys={"export_timeout": "2s"},
            data_path="/v3/operations/sync",
            grow=lambda sim, n: sim.add_records(n, end=_recent()),
        ),
    )
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "profile" in metafunc.fixturenames:
        metafunc.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))


@pytest.fixture
def sim(profile: Profile) -> Iterator[Simulator]:
    s = profile.make()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def profiles() -> dict[str, Profile]:
    """Every profile by provider name, for a test about one provider in particular."""
    return PROFILES


#: One line per suite figure ("20 kill points: 0 lost, 0 doubled"), shown after the run.
FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Where a test puts the figure it measured, for the terminal summary."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
