"""A record that cannot be mapped is quarantined; the rest of its page is stored, the cursor moves.

Through the real engine and store with the FleetIT simulator; every provider maps records
through the same `map_records` (tests/reliability/test_mapping_properties.py checks each one).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from logd_fleetit import FleetITSimulator

from logd import Entry, Status
from logd.cli.main import cli
from logd.cli.status import collect_status
from logd.plugin.testing import SyncRun
from logd.store.sqlite.search import SLOTS, time_key
from logd.store.sqlite.store import BatchResult, Store

NOW = datetime.now(UTC)


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=0) as s:
        yield s


def four_with_one_bad(sim: FleetITSimulator, **bad: Any) -> list[dict[str, Any]]:
    records = sim.add_records(4, at=NOW - timedelta(hours=1), spread=timedelta(minutes=30))
    records[1].update(bad)
    return records


def invalid_rows(run: SyncRun) -> list[tuple[str, str, str, str]]:
    return run.store.db.execute(
        "SELECT native_id, message, error, raw FROM entries WHERE status = 'invalid' "
        "ORDER BY native_id"
    ).fetchall()


def test_one_bad_timestamp_no_longer_blocks_the_page_or_the_cursor(
    tmp_path: Path, sim: FleetITSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    records = four_with_one_bad(sim, timestamp="0000-00-00 00:00:00")
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])

    with caplog.at_level(logging.WARNING, logger="logd.engine"):
        report = run.sync()["fleet"]

    assert report.ok, report.error
    assert (report.new, report.invalid) == (3, 1)
    good = [r for r in records if r is not records[1]]
    assert {r.native_id for r in run.rows(statuses=["success", "failure"])} == {
        str(r["id"]) for r in good
    }
    newest = max(good, key=lambda r: r["timestamp"])
    assert run.cursor("fleet") == {"watermark": newest["timestamp"]}
    [(native_id, message, error, raw)] = invalid_rows(run)
    assert native_id == str(records[1]["id"])  # the vendor id: a good fetch replaces it
    assert "'0000-00-00 00:00:00' is not an ISO 8601 date-time" in error
    assert message == f"unreadable record: {error}"
    assert json.loads(raw) == records[1]
    [line] = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert f"fleet: 1 unreadable record(s) quarantined, e.g. {native_id}:" in line
    assert "logd query --status invalid --source fleet" in line

    # Seen again on the next poll: not new, not logged again, nothing doubled.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="logd.engine"):
        again = run.sync()["fleet"]
    assert again.ok and (again.new, again.updated, again.invalid) == (0, 0, 0)
    assert not [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert run.count() == 4


def test_records_without_a_usable_id_never_merge(tmp_path: Path, sim: FleetITSimulator) -> None:
    records = sim.add_records(5, at=NOW - timedelta(hours=1), spread=timedelta(minutes=30))
    records[0]["id"] = None
    records[1]["id"] = None
    records[2]["id"] = True
    records[3]["id"] = [records[4]["id"]]
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])

    report = run.sync()["fleet"]
    assert report.ok, report.error
    rows = invalid_rows(run)
    assert len(rows) == 4 == len({r[0] for r in rows})  # two `"id": null` are two rows
    assert all(r[0].startswith("invalid-") for r in rows)
    assert "fleet:None" not in {f"fleet:{r.native_id}" for r in run.rows()}
    assert run.store.get(f"fleet:{records[4]['id']}") is not None

    run.sync()
    assert len(invalid_rows(run)) == 4 and run.count() == 5  # a re-fetch is the same rows


@pytest.mark.parametrize(
    "bad",
    [
        {"timestamp": None},
        {"timestamp": [1]},
        {"timestamp": 1e20},
        {"timestamp": "2262-04-12T00:00:00+00:00"},
        {"timestamp": "1600-01-01T00:00:00+00:00"},
        {"timestamp": True},
        {"entity_type": {"name": "Ticket"}},
        {"entity_id": [1]},
    ],
    ids=lambda bad: repr(bad)[:40],
)
def test_vendor_values_the_store_cannot_take_are_quarantined_not_a_crash(
    tmp_path: Path, sim: FleetITSimulator, bad: dict[str, Any]
) -> None:
    four_with_one_bad(sim, **bad)
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])

    report = run.sync()["fleet"]

    assert report.ok, report.error
    assert (report.new, report.invalid) == (3, 1)
    assert run.cursor("fleet") is not None


def test_a_later_good_fetch_replaces_the_quarantined_record(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    records = four_with_one_bad(sim, timestamp="0000-00-00 00:00:00", success=False)
    hook_results: list[BatchResult] = []
    run = SyncRun(
        tmp_path,
        [sim.demo_source("fleet")],
        batch_hooks=[lambda tx, result: hook_results.append(result)],
    )
    run.sync()
    alerted = [e.raw for r in hook_results for e in r.new_failures]
    assert records[1] not in alerted

    records[1]["timestamp"] = (NOW - timedelta(minutes=5)).isoformat()
    sim.add_records(0)  # the view is rebuilt
    report = run.sync()["fleet"]

    assert report.ok and report.updated == 1
    row = run.store.get(f"fleet:{records[1]['id']}")
    assert row is not None and row.status == "failure"
    assert row.timestamp == (NOW - timedelta(minutes=5)).isoformat(timespec="microseconds")
    assert invalid_rows(run) == []
    # The failure was never alerted as an invalid row; now that it reads, it is.
    assert [e.native_id for e in hook_results[-1].new_failures] == [str(records[1]["id"])]


def good(native_id: str, when: datetime, status: Status = Status.SUCCESS) -> Entry:
    e = Entry(native_id=native_id, timestamp=when, status=status, raw={"id": native_id})
    return e


def quarantined(native_id: str, when: datetime) -> Entry:
    from logd import Invalid

    e = Invalid({"id": native_id, "t": "0000"}, "bad time", native_id).to_entry(when)
    return e


def test_a_stored_good_entry_is_never_replaced_by_an_unreadable_copy(tmp_path: Path) -> None:
    with Store(tmp_path / "logd.db") as store:
        store.commit_batch("s", [good("1", NOW - timedelta(hours=1))], None, provider="p")
        result = store.commit_batch(
            "s", [quarantined("1", NOW), quarantined("2", NOW)], None, provider="p"
        )
        # In one batch too: the readable one wins whatever the order.
        store.commit_batch("s", [good("3", NOW), quarantined("3", NOW)], None, provider="p")

        assert result.unchanged == 1 and [e.native_id for e in result.invalid] == ["2"]
        assert not result.new_failures and result.new == 0
        assert store.get("s:1").status == "success"  # type: ignore[union-attr]
        assert store.get("s:3").status == "success"  # type: ignore[union-attr]
        # Providers that skip stored records see a quarantined one as not stored.
        assert store.known_ids("s", ["1", "2", "3"]) == {"1", "3"}
        [stats] = store.source_stats()
        assert (stats["entries"], stats["invalid"]) == (3, 1)


def test_status_and_query_show_quarantined_records(tmp_path: Path) -> None:
    path = tmp_path / "logd.db"
    with Store(path) as store:
        store.commit_batch("s", [good("1", NOW), quarantined("2", NOW)], None, provider="p")
        assert collect_status(store)[0]["invalid"] == 1
    runner = CliRunner()

    shown = runner.invoke(cli, ["query", "--db", str(path), "--status", "invalid", "-f", "json"])
    status = runner.invoke(cli, ["status", "--db", str(path), "--format", "json"])
    table = runner.invoke(cli, ["status", "--db", str(path)], env={"COLUMNS": "200"})

    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)
    assert (row["id"], row["status"], row["error"]) == ("s:2", "invalid", "bad time")
    assert row["raw"] == {"id": "2", "t": "0000"}
    assert json.loads(status.output)[0]["invalid"] == 1
    assert "invalid" in table.output


def test_query_status_choices_are_the_entry_statuses() -> None:
    option = next(p for p in cli.commands["query"].params if p.name == "statuses")
    assert list(option.type.choices) == [s.value for s in Status]  # type: ignore[attr-defined]


def test_many_entries_sharing_one_instant_take_a_linear_path(tmp_path: Path) -> None:
    when = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    n = 5 * SLOTS
    with Store(tmp_path / "logd.db") as store:
        store.commit_batch(
            "s", [good("early", when - timedelta(microseconds=1))], None, provider="p"
        )
        # Someone already in the third microsecond after the instant.
        store.commit_batch(
            "s", [good("later", when + timedelta(microseconds=2))], None, provider="p"
        )
        probes: list[str] = []
        conn: sqlite3.Connection = store.db.conn
        conn.set_trace_callback(probes.append)
        first = [good(f"a{i}", when) for i in range(n)]
        store.commit_batch("s", first, None, provider="p")
        second = [good(f"b{i}", when) for i in range(n)]
        store.commit_batch("s", second, None, provider="p")
        conn.set_trace_callback(None)

        ids = [
            r[0] for r in store.db.execute("SELECT native_id FROM entries ORDER BY id").fetchall()
        ]
        keys = [r[0] for r in store.db.execute("SELECT id FROM entries ORDER BY id").fetchall()]

    lookups = [p for p in probes if "max(id)" in p]
    # One lookup per batch for the instants, then one per microsecond crossed: 5 and 10 here
    # (plus the one already holding "later"); a scan per entry made it tens of thousands.
    assert len(lookups) <= 2 + 5 + 11
    order = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    assert [i for i in ids if i not in ("early", "later")] == order  # batch order kept
    assert ids[0] == "early" and len(ids) == len(set(ids)) == 2 * n + 2
    assert len(keys) == len(set(keys)) and keys[0] < time_key(when) <= keys[1]
    assert max(keys) < time_key(when) + 12 * SLOTS  # no gaps beyond the taken microseconds


def _iso(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def _ms(minutes_ago: int) -> str:
    return str(int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000))


# Per provider: a simulator, the path its log pages come from, and a page of two readable
# records and one that is not, in that vendor's shape.
PAGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "elasticpath": (
        "logd_elasticpath:ElasticPathSimulator",
        "/v2/integrations/logs",
        {
            "data": [
                {"id": "ep-1", "succeeded": True, "meta": {"timestamps": {"created_at": _iso(5)}}},
                {"id": "ep-2", "succeeded": False, "error_detail": "boom"},
                {"id": "ep-3", "meta": {"timestamps": {"created_at": "0000-00-00 00:00:00"}}},
            ],
            "results": {"total": 3},
        },
    ),
    "pegasus": (
        "logd_pegasus:PegasusSimulator",
        "/api/changelogs",
        {
            "data": [
                {"id": "c-1", "system_time": _iso(5), "method": "GET", "path": "/vehicles"},
                {"id": "c-2", "system_time": _iso(6), "method": "PUT", "path": "/vehicles/1"},
                {"id": "c-3", "system_time": "0000-00-00 00:00:00", "method": "GET"},
            ],
            "total": 3,
        },
    ),
    "akinon": (
        "logd_akinon:AkinonSimulator",
        "/logs",
        {
            "results": [
                {"id": 901, "created": _ms(5), "state": 3, "status": 2},
                {"id": 902, "created": _ms(6), "state": 3, "status": 2},
                {"id": 903, "created": "0000-00-00 00:00:00", "state": 3, "status": 2},
            ],
            "next": None,
        },
    ),
}


@pytest.mark.parametrize("provider", sorted(PAGES))
def test_every_provider_quarantines_the_bad_record_and_stores_the_rest(
    tmp_path: Path, provider: str
) -> None:
    import importlib

    where, path, page = PAGES[provider]
    module, name = where.split(":")
    with getattr(importlib.import_module(module), name)() as sim:
        sim.fail_next(200, body=json.dumps(page), path=path)
        run = SyncRun(tmp_path, [sim.demo_source(provider)])

        report = run.sync()[provider]

    assert report.ok, report.error
    assert report.invalid == 1
    [(native_id, _, error, raw)] = invalid_rows(run)
    bad = page["data" if "data" in page else "results"][2]
    assert json.loads(raw) == bad and native_id.endswith(str(bad["id"]))
    assert "0000-00-00 00:00:00" in error
    for good in page["data" if "data" in page else "results"][:2]:
        assert any(r.native_id.endswith(str(good["id"])) for r in run.rows())
    assert run.cursor(provider) is not None


def test_maestra_quarantines_a_row_without_a_transaction_id(tmp_path: Path) -> None:
    from logd_maestra import MaestraSimulator

    with MaestraSimulator(records=0) as sim:
        rows = sim.add_records(3, end=NOW - timedelta(minutes=15), spread=timedelta(hours=2))
        bad = sim.make_record(NOW - timedelta(minutes=20))
        bad["OperationLogTransactionId"] = ""
        sim.add([bad])
        run = SyncRun(tmp_path, [{**sim.demo_source("mx"), "backfill": "1d"}])

        report = run.sync()["mx"]

    assert report.ok, report.error
    assert (report.new, report.invalid) == (3, 1)
    [(native_id, _, error, raw)] = invalid_rows(run)
    assert native_id.startswith("invalid-") and "OperationLogTransactionId" in error
    assert json.loads(raw) == bad
    assert {r["OperationLogTransactionId"] for r in rows} <= {r.native_id for r in run.rows()}


def test_pages_of_only_unreadable_records_are_pages_not_empty_ones(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    # Nine pages in which nothing reads: the cursor stays put until the walk ends, as it does
    # for a walk that is not advancing, but these pages hold records (quarantined ones).
    for record in sim.add_records(900, at=NOW - timedelta(hours=1), spread=timedelta(hours=1)):
        record["timestamp"] = "0000-00-00 00:00:00"
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])

    report = run.sync()["fleet"]

    assert report.ok, report.error
    assert (report.pages, report.new, report.invalid) == (9, 0, 900)
