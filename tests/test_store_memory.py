# ruff: noqa: RUF001 - Turkish and Greek words are what these tests compare
"""The in-memory store (`logd.store.memory`) answers as the SQLite store does: the same
search results for the same query, the same batch outcomes; and it keeps the interface's
promises of its own (leases with fencing tokens, the change sequence, retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from logd import Entry, Status
from logd.store.interface import Filters, LeaseLost, NewDelivery, RunProgress
from logd.store.memory import MemoryStore
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)


def make(native_id: str, message: str, *, hours_ago: float = 1, **kw: Any) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=NOW - timedelta(hours=hours_ago),
        status=kw.pop("status", Status.FAILURE),
        message=message,
        **kw,
    )
    return e


ENTRIES = [
    make("tr-upper", "BAĞLANTI HATASI", error="KAPI"),
    make("tr-lower", "bağlantı hatası", hours_ago=2),
    make("el-upper", "ΣΦΑΛΜΑ", hours_ago=3, status=Status.SUCCESS),
    make("el-lower", "σφάλμα", hours_ago=4),
    make("de", "Straße", hours_ago=5, raw={"city": "Köln", "n": 42}),
    make("de-ss", "STRASSE", hours_ago=6, status=Status.PENDING),
    make("pol", "Order POL-358 failed", hours_ago=7, error="Gateway timeout"),
    make("ord", "order ORD_123 retried", hours_ago=8, details={"log": "upstream timed out"}),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sqlite = Store(tmp_path_factory.mktemp("memory") / "logd.db")
    memory = MemoryStore()
    for store in (sqlite, memory):
        store.commit_batch(
            "akinon",
            [make(e.native_id, e.message, **_kw(e)) for e in ENTRIES],
            None,
            provider="akinon",
        )
    yield sqlite, memory
    sqlite.close()


def _kw(e: Entry) -> dict[str, Any]:
    ago = (NOW - e.timestamp).total_seconds() / 3600
    return {
        "hours_ago": ago,
        "status": e.status,
        "error": e.error,
        "raw": e.raw,
        "details": e.details,
    }


@pytest.mark.parametrize(
    ("text", "fts"),
    [
        ("bağlantı", False),
        ("BAGLANTI hatasi", False),
        ("σφαλμα", False),
        ("strasse", False),
        ("POL-358", False),
        ('"order pol"', False),
        ("köln", False),
        ("42", False),
        ("timeout", False),
        ("upstream", False),
        ("ORD_123", False),
        ("ord", False),
        ("timeout OR σφαλμα", True),
        ("error:timeout", True),
        ("message:timeout", True),
        ("time*", True),
        ("order NOT pol", True),
        ("(strasse OR kapi) NOT hatası", True),
        ('"bağlantı hatası"', True),
        ("hatası bağlantı", True),
        ('"hatası bağlantı"', True),
    ],
)
def test_search_finds_what_the_sqlite_store_finds(stores: Any, text: str, fts: bool) -> None:
    sqlite, memory = stores
    for filters in (
        Filters(text=text, fts=fts),
        Filters(text=text, fts=fts, statuses=["failure"]),
        Filters(text=text, fts=fts, since=NOW - timedelta(hours=4.5)),
    ):
        want = [r.id for r in sqlite.search(filters, limit=None)]
        assert [r.id for r in memory.search(filters, limit=None)] == want, filters


def test_rows_stats_and_ids_are_those_of_the_sqlite_store(stores: Any) -> None:
    sqlite, memory = stores
    assert memory.search(Filters(), limit=3) == sqlite.search(Filters(), limit=3)
    assert memory.get("akinon:de") == sqlite.get("akinon:de")
    assert memory.ids_starting("akinon:de") == sqlite.ids_starting("akinon:de")
    for by in ("source", "provider", "status"):
        assert memory.stats(by=by) == sqlite.stats(by=by)
    assert memory.known_ids("akinon", ["de", "nope"]) == {"de"}


def test_a_batch_counts_new_updated_unchanged_and_new_failures_as_sqlite_does(
    tmp_path: Path,
) -> None:
    results = []
    for store in (Store(tmp_path / "logd.db"), MemoryStore()):
        got = [
            store.commit_batch(
                "akinon",
                [make("1", "a", status=Status.PENDING), make("2", "b")],
                1,
                provider="akinon",
            ),
            store.commit_batch("akinon", [make("1", "a"), make("2", "b")], 2, provider="akinon"),
            store.commit_batch("akinon", [make("2", "b", hours_ago=3)], 3, provider="akinon"),
        ]
        results.append([(r.new, r.updated, r.unchanged, len(r.new_failures)) for r in got])
        assert store.cursor("akinon") == 3
        store.close()
    assert results[0] == results[1] == [(2, 0, 0, 1), (0, 1, 1, 1), (0, 1, 0, 0)]


def test_a_hook_that_fails_leaves_nothing_of_its_batch() -> None:
    store = MemoryStore()
    run = store.start_run("akinon")

    def enqueue_then_fail(tx: Any, result: Any) -> None:
        tx.enqueue(NewDelivery("d1", "ops", "akinon", "akinon", 1, b"{}"), NOW)
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.commit_batch(
            "akinon",
            [make("1", "a")],
            {"page": 2},
            hooks=[enqueue_then_fail],
            run=RunProgress(run),
            provider="akinon",
        )
    assert store.get("akinon:1") is None and store.cursor("akinon") is None
    assert store.list_deliveries() == [] and store.last_change() == 0
    store.finish_run(run)
    assert store.source_stats()[0]["entries"] == 0


def test_the_change_sequence_holds_each_entry_once_at_its_latest_change() -> None:
    store = MemoryStore()
    store.commit_batch("akinon", [make("1", "a"), make("2", "b")], None, provider="akinon")
    first = store.last_change()
    store.commit_batch("akinon", [make("1", "a (edited)")], None, provider="akinon")
    changes = store.changes_after(0)
    assert [(seq, row.native_id) for seq, row in changes] == [(2, "2"), (3, "1")]
    assert [row.native_id for _, row in store.changes_after(first)] == ["1"]


def test_leases_fence_writes_of_a_holder_that_lost_its_lease() -> None:
    clock = [NOW]
    store = MemoryStore(clock=lambda: clock[0])
    a = store.claim_lease("source:akinon", "a", 30)
    assert a is not None and store.claim_lease("source:akinon", "b", 30) is None
    renewed = store.claim_lease("source:akinon", "a", 30)
    assert renewed is not None and renewed.token == a.token
    clock[0] += timedelta(seconds=31)
    b = store.claim_lease("source:akinon", "b", 30)
    assert b is not None and b.token > a.token
    with pytest.raises(LeaseLost):
        store.commit_batch("akinon", [make("1", "a")], 1, lease=a, provider="akinon")
    assert store.get("akinon:1") is None
    store.commit_batch("akinon", [make("1", "a")], 1, lease=b, provider="akinon")
    store.set_sink_position("otlp", 5, lease=b)
    store.set_sink_position("otlp", 3)
    assert store.sink_position("otlp") == 5  # never moves back
    store.release_lease(b)
    assert store.claim_lease("source:akinon", "c", 30) is not None


def test_retention_keeps_the_latest_runs_and_undelivered_alerts() -> None:
    store = MemoryStore(clock=lambda: NOW - timedelta(days=10))
    old_ok = store.start_run("akinon")
    store.finish_run(old_ok)
    old_failed = store.start_run("akinon")
    store.finish_run(old_failed, error="boom")
    store.commit_batch(
        "akinon", [make("old", "a", hours_ago=24 * 10), make("new", "b")], None, provider="akinon"
    )

    def queue(tx: Any, result: Any) -> None:
        tx.enqueue(
            NewDelivery("done", "ops", "akinon", "akinon", 1, b"{}"), NOW - timedelta(days=9)
        )
        tx.enqueue(
            NewDelivery("dead", "ops", "akinon", "akinon", 1, b"{}"), NOW - timedelta(days=9)
        )

    store.commit_batch("akinon", [], None, hooks=[queue], provider="akinon")
    from logd.store.interface import Attempt

    then = NOW - timedelta(days=9)
    store.record_attempts(
        [
            Attempt("done", "done", 200, None, then, then),
            Attempt("dead", "dead", 400, "x", then, then),
        ]
    )
    result = store.apply_retention(86_400 * 5, now=NOW)
    assert (result.entries, result.poll_runs, result.deliveries) == (1, 0, 1)
    assert [r.native_id for r in store.search(Filters(), limit=None)] == ["new"]
    assert [d.delivery_id for d in store.list_deliveries()] == ["dead"]
