"""The SQLite store as `logd.store.interface.Store`: the change sequence `query --follow` reads,
leases that fence a batch, schedule rows per daemon, delivery claims, and the migrations that
bring an older store to them with its rows."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from logd import Entry, Status
from logd.errors import StoreError
from logd.store import interface, open_reader, open_store
from logd.store.interface import (
    Attempt,
    BatchResult,
    BatchTransaction,
    Filters,
    LeaseLost,
    NewDelivery,
    RunProgress,
)
from logd.store.query_language import parse
from logd.store.sqlite.migrations import MIGRATIONS, migrate
from logd.store.sqlite.store import Store

T0 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)
#: The migrations this change added; an "older store" is one made before the first of them.
FIRST_NEW = "m010_outbox_sinks"


def entry(native_id: str, *, minutes: int = 0, status: Status = Status.SUCCESS, **kw: str) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=T0 + timedelta(minutes=minutes),
        status=status,
        message=kw.pop("message", f"call {native_id}"),
    )
    return e


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "logd.db") as s:
        yield s


# -- the interface ---------------------------------------------------------------------------


def _protocol_methods() -> dict[str, inspect.Signature]:
    members = {}
    for name, value in vars(interface.Store).items():
        if callable(value) and not name.startswith("_"):
            members[name] = inspect.signature(value)
    return members


def test_the_sqlite_store_has_every_method_of_the_interface(store: Store) -> None:
    # mypy checks the types (`_implements_interface` in logd.store.sqlite.store); this checks
    # at run time that no method is missing or takes other parameter names.
    methods = _protocol_methods()
    assert len(methods) > 30
    for name, wanted in methods.items():
        have = inspect.signature(getattr(store, name))
        assert list(have.parameters) == list(wanted.parameters)[1:], name  # less `self`
    assert store.location == str(store.path)


def test_open_store_dispatches_on_the_scheme(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with open_store(str(path)) as s:  # type: ignore[attr-defined]
        assert isinstance(s, Store)
    reader = open_reader(path)
    with pytest.raises(StoreError, match="read-only"):
        reader.make_due([], T0)
    reader.close()
    # A URL goes to the PostgreSQL backend (tests/test_store_postgres.py), here one with no
    # server behind it: a socket directory that does not exist.
    with pytest.raises(StoreError, match="cannot reach the PostgreSQL server"):
        open_store(f"postgresql://logd@/logd?host={tmp_path / 'nowhere'}")


# -- the change sequence -------------------------------------------------------------------


def test_every_insert_and_change_gets_the_next_change_number(store: Store) -> None:
    assert store.last_change() == 0
    store.commit_batch("src", [entry("1"), entry("2", minutes=1)], None, provider="prov")
    assert store.last_change() == 2
    store.commit_batch(
        "src", [entry("1"), entry("2", minutes=1)], None, provider="prov"
    )  # unchanged
    assert store.last_change() == 2
    store.commit_batch("src", [entry("1", status=Status.FAILURE)], None, provider="prov")
    changes = store.changes_after(0)
    assert [(n, r.native_id, r.status) for n, r in changes] == [
        (2, "2", "success"),
        (3, "1", "failure"),
    ]
    assert [r.native_id for _, r in store.changes_after(2)] == ["1"]
    failures = store.changes_after(0, filters=Filters(statuses=["failure"]))
    assert [r.native_id for _, r in failures] == ["1"]
    words = store.changes_after(0, filters=Filters(text="call 2"))
    assert [r.native_id for _, r in words] == ["2"]
    # An entry whose time moves gets a new key and a new change number.
    store.commit_batch("src", [entry("2", minutes=30)], None, provider="prov")
    assert [(n, r.native_id) for n, r in store.changes_after(3)] == [(4, "2")]


def test_numbers_are_never_handed_out_twice_after_retention(store: Store) -> None:
    store.commit_batch("src", [entry("old", minutes=-60 * 24 * 400)], None, provider="prov")
    store.apply_retention(86_400 * 30)
    store.commit_batch("src", [entry("new")], None, provider="prov")
    assert [n for n, _ in store.changes_after(0)] == [2]


@pytest.mark.parametrize(
    "filters",
    [Filters(), Filters(sources=["src"]), Filters(statuses=["failure"]), Filters(text="call")],
    ids=["all", "source", "status", "text"],
)
def test_the_follow_query_reads_the_change_index(store: Store, filters: Filters) -> None:
    store.commit_batch("src", [entry(str(i), minutes=i) for i in range(50)], None, provider="prov")
    sql: list[str] = []
    store.db.conn.set_trace_callback(sql.append)
    store.changes_after(10, filters=filters)
    store.db.conn.set_trace_callback(None)
    [query] = [s for s in sql if "entries.change >" in s]
    # The traced statement has its values in place: its plan is the one the store ran.
    plan = " | ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + query).fetchall())
    assert "USING INDEX entries_change" in plan, plan
    assert "SCAN entries" not in plan.replace("SCAN entries_fts", ""), plan
    assert "TEMP B-TREE" not in plan, plan


def test_an_older_store_numbers_changes_from_its_upgrade_on(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = _older_store(path)
    db.execute(
        "INSERT INTO entries (id, source, provider, native_id, timestamp, status, hash, "
        "first_seen, updated_at) VALUES (1, 'src', 'prov', 'a', ?, 'success', 'h', "
        "'2024-01-01', '2024-01-01')",
        [T0.isoformat(timespec="microseconds")],
    )
    db.conn.commit()
    db.close()
    with Store(path) as s:
        # Stored before: no change number (the migration rewrites no row), still searchable.
        assert s.last_change() == 0 and s.changes_after(0) == []
        assert [r.native_id for r in s.search(Filters())] == ["a"]
        s.commit_batch("src", [entry("b")], None, provider="prov")
        assert [(n, r.native_id) for n, r in s.changes_after(0)] == [(1, "b")]


def _older_store(path: Path) -> sqlite_utils.Database:
    """A store migrated up to just before this change's migrations."""
    db = sqlite_utils.Database(path)
    saved = list(MIGRATIONS)
    names = [m.__name__ for m in saved]
    MIGRATIONS[:] = saved[: names.index(FIRST_NEW)]
    try:
        migrate(db)
    finally:
        MIGRATIONS[:] = saved
    return db


# -- poll runs, hooks and leases in the batch's transaction ----------------------------------


def test_run_counters_and_hook_work_commit_with_the_batch(store: Store) -> None:
    run_id = store.start_run("src")
    seen: list[set[int]] = []

    def hook(tx: BatchTransaction, result: BatchResult) -> None:
        rows = tx.rows([e.native_id for e in result.new_failures])
        seen.append(tx.matching(parse("boom"), list(rows)))  # type: ignore[arg-type]
        tx.enqueue(NewDelivery("dlv_1", "ops", tx.source, "prov", len(rows), b"{}"), T0)

    batch = [entry("1", status=Status.FAILURE, message="boom"), entry("2", status=Status.FAILURE)]
    store.commit_batch(
        "src", batch, None, hooks=[hook], run=RunProgress(run_id, pages=3), provider="prov"
    )
    assert len(seen) == 1 and len(seen[0]) == 1
    [delivery] = store.list_deliveries()
    assert (delivery.sink, delivery.source, delivery.count) == ("ops", "src", 2)
    row = store.db.execute("SELECT pages, new, failures FROM poll_runs WHERE id = ?", [run_id])
    assert row.fetchone() == (3, 2, 2)

    def crash(tx: BatchTransaction, result: BatchResult) -> None:
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.commit_batch(
            "src", [entry("3")], None, hooks=[crash], run=RunProgress(run_id), provider="prov"
        )
    row = store.db.execute("SELECT pages, new FROM poll_runs WHERE id = ?", [run_id])
    assert row.fetchone() == (3, 2)  # the counters rolled back with the batch
    assert store.last_change() == 2


def test_a_lease_has_one_holder_and_a_new_holder_a_larger_token(store: Store) -> None:
    a = store.claim_lease("source:fleet", "daemon-a", ttl=60)
    assert a is not None and a.token == 1
    assert store.claim_lease("source:fleet", "daemon-b", ttl=60) is None
    renewed = store.claim_lease("source:fleet", "daemon-a", ttl=60)
    assert renewed is not None and renewed.token == 1 and renewed.expires_at >= a.expires_at
    store.release_lease(a)
    b = store.claim_lease("source:fleet", "daemon-b", ttl=60)
    assert b is not None and b.token == 2
    store.release_lease(a)  # a's lease is gone: releasing it again leaves b's alone
    assert store.claim_lease("source:fleet", "daemon-a", ttl=60) is None
    assert [(lease.name, lease.holder) for lease in store.leases()] == [
        ("source:fleet", "daemon-b")
    ]


def test_an_expired_lease_passes_to_the_next_holder(store: Store) -> None:
    a = store.claim_lease("source:fleet", "daemon-a", ttl=0)
    b = store.claim_lease("source:fleet", "daemon-b", ttl=60)
    assert a is not None and b is not None and b.token == a.token + 1


def test_a_batch_fenced_by_a_lost_lease_writes_nothing(store: Store) -> None:
    run_id = store.start_run("src")
    old = store.claim_lease("source:src", "daemon-a", ttl=0)  # lapses at once
    assert old is not None
    hooked: list[BatchResult] = []
    for lease in (old, store.claim_lease("source:src", "daemon-b", ttl=60)):
        assert lease is not None
        if lease.holder == "daemon-b":
            fenced = lease
            continue
        with pytest.raises(LeaseLost, match="source:src"):
            store.commit_batch(
                "src",
                [entry("1")],
                {"page": 2},
                hooks=[lambda tx, result: hooked.append(result)],
                run=RunProgress(run_id),
                lease=lease,
                provider="prov",
            )
    # daemon-a's write came too late (expired, then taken): nothing of it is stored.
    with pytest.raises(LeaseLost):
        store.commit_batch("src", [entry("1")], {"page": 2}, lease=old, provider="prov")
    assert store.search(Filters()) == [] and store.cursor("src") is None and not hooked
    assert store.last_change() == 0
    done = store.commit_batch("src", [entry("1")], {"page": 2}, lease=fenced, provider="prov")
    assert done.new == 1 and store.cursor("src") == {"page": 2}


# -- schedule rows per daemon ----------------------------------------------------------------


def test_a_daemon_clears_only_its_own_schedule_rows(store: Store) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    later = soon + timedelta(seconds=60)
    store.set_schedule("host:1:aa", "fleet", later, 60, 0)
    store.set_schedule("host:2:bb", "fleet", soon, 60, 1)
    store.set_schedule("host:2:bb", "akinon", soon, 30, 0)
    planned = store.schedule()
    assert planned["fleet"]["daemon"] == "host:2:bb"  # the one that polls it soonest
    store.clear_schedule("host:2:bb")
    assert store.schedule() == {
        "fleet": {
            "daemon": "host:1:aa",
            "next_run": later.isoformat(timespec="seconds"),
            "interval": 60,
            "consecutive_failures": 0,
        }
    }
    store.clear_schedule("host:1:aa", ["fleet"])
    assert store.schedule() == {}


def test_an_older_store_keeps_its_outbox_and_schedule_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = _older_store(path)
    db.execute(
        "INSERT INTO webhook_outbox (delivery_id, webhook, source, provider, count, body, "
        "next_attempt_at, created_at, updated_at) VALUES ('dlv_1', 'ops', 'src', 'prov', 1, "
        "x'7b7d', '2024-01-01', '2024-01-01', '2024-01-01')"
    )
    db.execute(
        "INSERT INTO daemon_schedule (source, next_run, interval, updated_at) "
        "VALUES ('fleet', '2024-01-01T00:00:00+00:00', 60, '2024-01-01')"
    )
    db.conn.commit()
    db.close()
    with Store(path) as s:
        [delivery] = s.list_deliveries()
        assert (delivery.delivery_id, delivery.sink, delivery.body) == ("dlv_1", "ops", b"{}")
        assert s.outbox_counts("sink") == {"ops": {"pending": 1, "dead": 0, "done": 0}}
        assert s.schedule()["fleet"]["daemon"] == ""
        s.clear_schedule("host:1:aa")  # rows no daemon id owns go with any daemon's clear
        assert s.schedule() == {}


# -- delivery claims -------------------------------------------------------------------------


def _queue(store: Store, *ids: str, sink: str = "ops") -> None:
    def hook(tx: BatchTransaction, result: BatchResult) -> None:
        for delivery_id in ids:
            tx.enqueue(NewDelivery(delivery_id, sink, "src", "prov", 1, b"{}"), T0)

    store.commit_batch("src", [], None, hooks=[hook], provider="prov")


def test_two_holders_never_claim_the_same_delivery(store: Store) -> None:
    _queue(store, "d1", "d2", "d3")
    now = T0 + timedelta(seconds=1)
    first = store.claim_due("ops", "a", ttl=60, now=now, limit=2)
    assert [d.delivery_id for d in first] == ["d1", "d2"]
    assert store.claim_due("ops", "b", ttl=60, now=now) == []  # the lane is a's for now
    assert store.claim_due("ops", "b", ttl=60, now=now, ids=["d1", "d3"])[0].delivery_id == "d3"
    # Another process on the same file sees the claims too.
    with Store(store.path) as other:
        assert other.claim_due("ops", "c", ttl=60, now=now, ids=["d1", "d2"]) == []
    store.record_attempts([Attempt("d1", "done", 204, None, now, now)])
    # d3 is b's: the lane (first in, first out) waits for it, even for a's own d2.
    assert store.claim_due("ops", "a", ttl=60, now=now) == []
    assert [d.delivery_id for d in store.claim_due("ops", "a", 60, now, ids=["d2"])] == ["d2"]
    # A claim lapses: after its ttl the row goes to whoever asks.
    late = now + timedelta(seconds=61)
    assert {d.delivery_id for d in store.claim_due("ops", "b", ttl=60, now=late)} == {"d2", "d3"}


def test_concurrent_claims_share_out_the_rows(store: Store) -> None:
    _queue(store, *(f"d{i}" for i in range(40)))
    now = T0 + timedelta(seconds=1)
    got: dict[str, list[str]] = {}

    def claim(holder: str) -> None:
        got[holder] = [
            d.delivery_id
            for _ in range(10)
            for d in store.claim_due("ops", holder, 60, now, ids=[f"d{i}" for i in range(40)])
        ]

    threads = [threading.Thread(target=claim, args=(h,)) for h in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A holder asking again gets its own rows again; no row is ever two holders'.
    owned = [set(ids) for ids in got.values()]
    assert sum(len(ids) for ids in owned) == len(set().union(*owned)) == 40


def test_a_sink_position_never_moves_back(store: Store) -> None:
    assert store.sink_position("otlp") == 0
    store.set_sink_position("otlp", 7)
    store.set_sink_position("otlp", 3)
    assert store.sink_position("otlp") == 7
    lease = store.claim_lease("sink:otlp", "a", ttl=0)
    assert lease is not None and store.claim_lease("sink:otlp", "b", ttl=60) is not None
    with pytest.raises(LeaseLost):
        store.set_sink_position("otlp", 9, lease=lease)
    assert store.sink_position("otlp") == 7


def test_the_claims_of_a_process_that_is_gone_are_void(store: Store) -> None:
    _queue(store, "d1", "d2")
    now = T0 + timedelta(seconds=1)
    assert len(store.claim_due("ops", "a", ttl=600, now=now)) == 2
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # As if the claiming process had been killed mid-round (a `logd run` SIGKILLed).
    store.db.execute("UPDATE webhook_outbox SET claimed_pid = ?", [gone.pid])
    store.db.conn.commit()
    with Store(store.path) as restarted:
        assert [d.delivery_id for d in restarted.claim_due("ops", "b", 60, now)] == ["d1", "d2"]


def test_status_names_the_daemon_holding_a_source(tmp_path: Path) -> None:
    from io import StringIO

    from logd.cli.status import collect_status, write_status

    with Store(tmp_path / "logd.db") as store:
        store.set_schedule("host-a:1:aa", "fleet", None, 60.0, 0)
        store.set_schedule("host-b:2:bb", "pegasus", None, 60.0, 0)
        assert store.claim_lease("source:fleet", "host-a:1:aa", 600) is not None
        rows = {r["source"]: r for r in collect_status(store)}
        assert rows["fleet"]["held_by"] == "host-a:1:aa" and rows["fleet"]["lease_until"]
        assert rows["pegasus"]["held_by"] is None
        out = StringIO()
        write_status(list(rows.values()), "table", out)
        (fleet_line,) = [line for line in out.getvalue().splitlines() if "fleet" in line]
        assert "host-a:1:aa" in fleet_line
