"""A source's first poll is a backfill: its failures are stored, not sent (unless a webhook opts
in), and entries whose time is only when logd saw them say so everywhere they are shown."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from logd_elasticpath.simulator import ElasticPathSimulator

from logd.cli.main import cli
from logd.delivery.receiver import Receiver
from logd.plugin.testing import write_config
from logd.store.sqlite.store import Store

SECRET = "backfill-hook-secret"


@pytest.fixture
def ep() -> Iterator[ElasticPathSimulator]:
    with ElasticPathSimulator(integrations=(60, 30)) as sim:
        yield sim


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver(SECRET) as receiver:
        yield receiver


def config_for(tmp_path: Path, ep: ElasticPathSimulator, rx: Receiver, **hook: Any) -> Path:
    webhook = {"name": "ops", "url": rx.url, "secret": SECRET, "max_age": "1h", **hook}
    webhook = {k: v for k, v in webhook.items() if v is not None}
    return write_config(tmp_path, [ep.demo_source("ep")], webhooks=[webhook])


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def stored(config: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        invoke("query", "-c", str(config), "-n", "0", "--format", "json").output
    )
    return rows


def test_the_first_sync_stores_failures_and_sends_none_later_ones_are_sent(
    tmp_path: Path, ep: ElasticPathSimulator, rx: Receiver
) -> None:
    config = config_for(tmp_path, ep, rx)
    first = invoke("sync", "-c", str(config))
    assert "webhook ops: 0 delivered, 0 retrying, 0 dead" in first.output
    rows = stored(config)
    failures = {r["id"] for r in rows if r["status"] == "failure"}
    # Half the records have no created_at and were stamped on sight, so max_age = 1h would
    # let their failures through: the backfill holds them back instead.
    assert len(rows) == 90 and failures
    assert any(r["timestamp_observed"] for r in rows)
    assert not any(r["timestamp_observed"] for r in rows if r["raw"].get("meta"))
    with Store(tmp_path / "logd.db", create=False) as store:
        assert store.outbox_counts("source") == {}
    assert rx.received == []

    # A failure that appears on a later poll is news: sent as ever.
    ep.add_records(20)
    second = invoke("sync", "-c", str(config))
    new_failures = {r["id"] for r in stored(config) if r["status"] == "failure"} - failures
    assert new_failures
    assert "0 retrying, 0 dead" in second.output
    sent = [e for got in rx.received for e in got.json()["entries"]]
    assert {e["id"] for e in sent} == new_failures
    assert all(isinstance(e["timestamp_observed"], bool) for e in sent)


def test_alert_backfill_sends_the_first_polls_failures(
    tmp_path: Path, ep: ElasticPathSimulator, rx: Receiver
) -> None:
    config = config_for(tmp_path, ep, rx, alert_backfill=True, max_age=None)
    invoke("sync", "-c", str(config))
    failures = {r["id"] for r in stored(config) if r["status"] == "failure"}
    sent = {e["id"] for got in rx.received for e in got.json()["entries"]}
    assert failures and sent == failures


def test_show_and_query_mark_a_time_that_is_only_when_logd_saw_the_record(
    tmp_path: Path, ep: ElasticPathSimulator, rx: Receiver
) -> None:
    config = config_for(tmp_path, ep, rx)
    invoke("sync", "-c", str(config))
    rows = stored(config)
    seen = next(r for r in rows if r["timestamp_observed"])
    dated = next(r for r in rows if not r["timestamp_observed"])
    note = "time first seen by logd: the vendor gives none"
    assert note in invoke("show", seen["id"], "-c", str(config)).output
    assert note not in invoke("show", dated["id"], "-c", str(config)).output
    assert json.loads(invoke("show", seen["id"], "-c", str(config), "-f", "json").output)[
        "timestamp_observed"
    ]
    table = invoke("query", "-c", str(config), "-n", "0").output.splitlines()
    assert table[-1].startswith(f"~ {note}")
    marked = [line for line in table if "~" in line.split(seen["native_id"][:8])[0]]
    assert marked  # the row's time carries the mark


def test_readers_of_a_store_from_before_the_flag_still_work(
    tmp_path: Path, ep: ElasticPathSimulator, rx: Receiver
) -> None:
    config = config_for(tmp_path, ep, rx)
    invoke("sync", "-c", str(config))
    # The store as an older logd left it: no column, the migration not recorded.
    conn = sqlite3.connect(tmp_path / "logd.db")
    conn.execute("ALTER TABLE entries DROP COLUMN timestamp_observed")
    conn.execute("DELETE FROM _logd_migrations WHERE name = 'm007_observed_time'")
    conn.commit()
    conn.close()
    rows = stored(config)  # read without migrating
    assert len(rows) == 90 and not any(r["timestamp_observed"] for r in rows)
    # The next writer migrates it.
    invoke("sync", "-c", str(config))
    with Store(tmp_path / "logd.db") as store:
        columns = {r[1] for r in store.db.execute("PRAGMA table_info(entries)")}
    assert "timestamp_observed" in columns
