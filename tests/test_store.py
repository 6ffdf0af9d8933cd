"""The store: transactional batches, idempotent upserts, FTS in step, time-ordered keys."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from logd import Entry, Status
from logd.errors import QueryError, StoreError
from logd.store.query_language import parse
from logd.store.sqlite.migrations import MIGRATIONS, migrate
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.search import search_sql
from logd.store.sqlite.statements import row_counts
from logd.store.sqlite.store import Filters, Store, time_key
from logd.store.sqlite.transaction import SqliteBatchTransaction
from logd.store.text import searchable_text

T0 = datetime(2024, 5, 5, 12, 0, tzinfo=UTC)


def entry(
    native_id: str, *, minutes: int = 0, status: Status = Status.SUCCESS, **kw: object
) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=T0 + timedelta(minutes=minutes),
        status=status,
        message=str(kw.pop("message", f"call {native_id}")),
        **kw,
    )  # type: ignore[arg-type]
    return e


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "sub" / "logd.db")


def test_file_is_owner_only_wal_and_migrated(tmp_path: Path, store: Store) -> None:
    store.commit_batch("src", [entry("1")], {"c": 1}, provider="prov")
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{store.path}{suffix}")
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, suffix
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # A backfill checkpoints every ~40 MB of WAL; the file is cut back to 64 MB afterwards.
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 5_120  # 8 KiB pages
    assert store.db.execute("PRAGMA journal_size_limit").fetchone()[0] == 64 * 2**20
    assert migrate(store.db) == []  # already current
    names = {r[0] for r in store.db.execute("SELECT name FROM _logd_migrations")}
    assert names == {m.__name__ for m in MIGRATIONS}
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == 8192  # new files only


def test_an_older_store_loses_the_unused_updated_index(tmp_path: Path) -> None:
    # A store made before m005 (4 KiB pages, entries_updated) opens, migrates, keeps its rows.
    old = Store(tmp_path / "old.db")
    old.commit_batch("src", [entry("1")], None, provider="prov")
    with old.transaction() as db:
        db.execute("CREATE INDEX entries_updated ON entries (updated_at)")
        db.execute("DELETE FROM _logd_migrations WHERE name = 'm005_drop_updated_index'")
    old.close()
    store = Store(tmp_path / "old.db")
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "entries_updated" not in indexes and "entries_source_status" in indexes
    assert [r.native_id for r in store.search(Filters())] == ["1"]


def test_refetch_unchanged_writes_nothing(store: Store) -> None:
    first = store.commit_batch("src", [entry("1"), entry("2")], {"n": 1}, provider="prov")
    assert (first.new, first.updated) == (2, 0)
    changes = store.db.conn.total_changes
    again = store.commit_batch("src", [entry("1"), entry("2")], None, provider="prov")
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert store.db.conn.total_changes == changes


def test_changed_record_is_updated_with_its_fts_row(store: Store) -> None:
    store.commit_batch("src", [entry("1", message="connection timeout")], None, provider="prov")
    assert [r.id for r in store.search(Filters(text="timeout"))] == ["src:1"]
    result = store.commit_batch(
        "src", [entry("1", message="refused by peer")], None, provider="prov"
    )
    assert result.updated == 1
    assert store.search(Filters(text="timeout")) == []
    assert [r.id for r in store.search(Filters(text="refused"))] == ["src:1"]
    fts_rows = store.db.execute("SELECT count(*) FROM entries_fts").fetchone()[0]
    assert fts_rows == 1


def test_status_change_is_recorded_and_reported_as_a_new_failure(store: Store) -> None:
    store.commit_batch("src", [entry("1", status=Status.PENDING)], None, provider="prov")
    result = store.commit_batch("src", [entry("1", status=Status.FAILURE)], None, provider="prov")
    assert [e.native_id for e in result.new_failures] == ["1"]
    change = store.db.execute("SELECT old_status, new_status FROM status_changes").fetchall()
    assert change == [("pending", "failure")]
    # A known failure fetched again is not new.
    again = store.commit_batch("src", [entry("1", status=Status.FAILURE)], None, provider="prov")
    assert again.new_failures == []


def test_batch_and_cursor_roll_back_together(store: Store) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("crash inside the transaction")

    with pytest.raises(RuntimeError):
        store.commit_batch("src", [entry("1")], {"page": 2}, hooks=[boom], provider="prov")
    assert store.search(Filters()) == [] and store.cursor("src") is None


def test_details_are_kept_when_a_refetch_has_none(store: Store) -> None:
    store.commit_batch(
        "src", [entry("1", details={"log": "stack trace: NullPointer"})], None, provider="prov"
    )
    store.commit_batch("src", [entry("1")], None, provider="prov")
    row = store.get("src:1")
    assert row is not None and row.details == {"log": "stack trace: NullPointer"}
    assert [r.id for r in store.search(Filters(text="NullPointer"))] == ["src:1"]


def test_observed_timestamps_keep_the_first_sighting(store: Store) -> None:
    store.commit_batch("src", [entry("1", timestamp_observed=True)], None, provider="prov")
    later = entry("1", minutes=90, timestamp_observed=True)
    assert store.commit_batch("src", [later], None, provider="prov").unchanged == 1
    row = store.get("src:1")
    assert row is not None and row.timestamp == T0.isoformat(timespec="microseconds")


def test_a_moved_timestamp_moves_the_key(store: Store) -> None:
    store.commit_batch("src", [entry("1"), entry("2", minutes=5)], None, provider="prov")
    store.commit_batch("src", [entry("1", minutes=10)], None, provider="prov")
    assert [r.id for r in store.search(Filters())] == ["src:1", "src:2"]


def test_newest_first_with_equal_timestamps_and_time_filters(store: Store) -> None:
    batch = [entry(str(i), minutes=i // 3) for i in range(9)]
    store.commit_batch("src", batch, None, provider="prov")
    rows = store.search(Filters(), limit=None)
    assert len(rows) == 9
    times = [r.timestamp for r in rows]
    assert times == sorted(times, reverse=True)
    window = store.search(Filters(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)))
    assert sorted(r.native_id for r in window) == ["3", "4", "5"]
    assert time_key(T0) < time_key(T0 + timedelta(microseconds=1))


def test_filters_and_quoting(store: Store) -> None:
    store.commit_batch(
        "src",
        [
            entry("1", status=Status.FAILURE, message="timeout AND more"),
            entry("2", status=Status.SUCCESS, message="NOT a problem"),
            entry("3", status=Status.PENDING, message='quote " inside'),
        ],
        None,
        provider="prov",
    )
    assert [r.id for r in store.search(Filters(statuses=("failure",)))] == ["src:1"]
    assert [r.id for r in store.search(Filters(text="NOT"))] == ["src:2"]
    assert [r.id for r in store.search(Filters(text='quote "'))] == ["src:3"]
    assert store.search(Filters(sources=("other",))) == []
    assert [r.id for r in store.search(Filters(text="timeout OR problem", fts=True))] == [
        "src:2",
        "src:1",
    ]
    with pytest.raises(QueryError, match="'AND' at position 1 needs a word before it"):
        store.search(Filters(text="AND (", fts=True))


def test_missing_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no logd database"):
        Store(tmp_path / "none.db", create=False)
    other = tmp_path / "other.db"
    sqlite_utils.Database(other)["t"].insert({"a": 1})
    with pytest.raises(StoreError, match="not a logd database"):
        Store(other, create=False)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        Store(garbage)


def test_a_record_twice_in_one_batch_is_stored_once_last_wins(store: Store) -> None:
    result = store.commit_batch(
        "src", [entry("1", message="first"), entry("1", message="second")], None, provider="prov"
    )
    assert result.new == 1
    row = store.get("src:1")
    assert row is not None and row.message == "second"


@pytest.mark.parametrize(
    "ids",
    [
        ("a\x00b", "a\x00c", "a"),  # what SQLite's JSON would read them as, stored too
        ("\x00", "\x00\x00", "z"),
        ("x\x01\x1f\u2028\U0001f600y", 'q\\u0000"', "\\"),
    ],
    ids=["nul-inside", "nul-only", "controls-and-escapes"],
)
def test_any_native_id_is_found_again_exactly(store: Store, ids: tuple[str, ...]) -> None:
    # SQLite's JSON functions end a text at NUL: an id passed through them missed its stored
    # row, and committing it again failed the UNIQUE constraint. Set after construction, so
    # the store is checked whatever `Entry` itself accepts.
    def batch(status: Status) -> list[Entry]:
        made = []
        for native_id in ids:
            e = entry("placeholder", status=status)
            e.native_id = native_id
            made.append(e)
        return made

    assert store.commit_batch("src", batch(Status.PENDING), None, provider="prov").new == 3
    again = store.commit_batch("src", batch(Status.FAILURE), None, provider="prov")
    assert (again.new, again.updated) == (0, 3)
    assert sorted(e.native_id for e in again.new_failures) == sorted(ids)
    assert store.known_ids("src", [ids[0], ids[0] + "-not-stored"]) == {ids[0]}
    with Reader(store.path) as reader:
        assert reader.known_ids("src", list(ids)) == set(ids)
    assert store.db.execute("SELECT count(*) FROM entries").fetchone()[0] == 3


#: Batch lengths a backfill meets: pages, pages that piled up, either side of 500 (IN_CHUNK).
LENGTHS = (1, 3, 100, 499, 500, 777)


def test_batches_of_any_length_reuse_a_few_statements(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection caches 128 prepared statements by their text, each holding a slot and
    # a copy of the last value bound per `?`: a statement written for each batch's length
    # kept one per length a backfill met (43 in 300k FleetIT records, ~20 MB). Lookups bind
    # lists of one length padded with NULL; inserts take sizes of one small set.
    texts: list[str] = []
    execute = store.db.execute

    def recording(sql: str, parameters: Any = None) -> Any:
        texts.append(sql)
        return execute(sql, parameters)

    monkeypatch.setattr(store.db, "execute", recording)
    batches = [[entry(f"{n}-{i}", minutes=i % 7) for i in range(n)] for n in LENGTHS]
    for batch in batches:
        assert store.commit_batch("src", batch, None, provider="prov").new == len(batch)
    for batch in batches:  # found again across chunk edges; NULL padding matched nothing
        assert store.commit_batch("src", batch, None, provider="prov").unchanged == len(batch)
        with store.transaction() as db:
            tx = SqliteBatchTransaction(db, "src", "prov", store.entry_columns, store._store_error)
            rows = tx.rows([e.native_id for e in batch])
            assert sorted(r.native_id for r in rows.values()) == sorted(e.native_id for e in batch)
            assert len(tx.matching(parse("call"), list(rows))) == len(batch)
    lookups = {t for t in texts if "native_id IN" in t or "rowid IN" in t}
    assert len(lookups) == 3  # _existing, rows, matching: one each, whatever the length
    inserted = [t.count("?2, ?2") for t in texts if t.startswith("INSERT INTO entries (")]
    assert sum(inserted) == sum(LENGTHS)
    assert set(inserted) <= {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}
    assert store.db.execute("SELECT count(*) FROM entries").fetchone()[0] == sum(LENGTHS)


@pytest.mark.parametrize("most", [500, 62, 1])
def test_row_counts_cover_every_row_with_few_sizes(most: int) -> None:
    sizes: set[int] = set()
    for total in range(700):
        counts = list(row_counts(total, most))
        assert sum(counts) == total and all(0 < n <= most for n in counts)
        sizes.update(counts)
    assert len(sizes) <= most.bit_length() + 1


def test_a_changed_record_without_a_new_download_keeps_its_details(store: Store) -> None:
    store.commit_batch(
        "src",
        [entry("1", status=Status.PENDING, details={"log": "NullPointer"})],
        None,
        provider="prov",
    )
    result = store.commit_batch("src", [entry("1", status=Status.FAILURE)], None, provider="prov")
    assert result.updated == 1
    row = store.get("src:1")
    assert row is not None and row.status == "failure" and row.details == {"log": "NullPointer"}
    # The FTS row was rewritten by the update and still carries the download's text.
    assert [r.id for r in store.search(Filters(text="NullPointer"))] == ["src:1"]


def test_fts_rows_follow_inserts_updates_moves_and_deletes(store: Store) -> None:
    # New rows are indexed by one statement per batch (m004 dropped the insert trigger).
    assert not store.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'entries_ai'"
    ).fetchall()
    crowd = [entry(str(i), message=f"crowd {i}") for i in range(1200)]  # > SLOTS in 1 µs
    store.commit_batch("src", crowd, None, provider="prov")
    store.commit_batch("src", [entry("0", minutes=60, message="moved")], None, provider="prov")
    store.commit_batch("src", [entry("1", message="changed")], None, provider="prov")
    with store.transaction() as db:
        db.execute("DELETE FROM entries WHERE native_id = '2'")
        db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")
    assert len(store.search(Filters(text="crowd"), limit=None)) == 1197
    assert [r.native_id for r in store.search(Filters(text="moved"))] == ["0"]
    assert [r.native_id for r in store.search(Filters(text="changed"))] == ["1"]


def test_raw_is_stored_as_stable_json(store: Store) -> None:
    a = entry("1", raw={"b": 1, "a": ["ü", None], 3: "int key"})
    store.commit_batch("src", [a], None, provider="prov")
    (raw,) = store.db.execute("SELECT raw FROM entries").fetchone()
    assert raw == '{"3":"int key","a":["ü",null],"b":1}'  # sorted keys, UTF-8, compact
    same = entry("1", raw={"a": ["ü", None], "b": 1, 3: "int key"})
    assert store.commit_batch("src", [same], None, provider="prov").unchanged == 1


def test_a_status_assigned_as_text_is_stored(store: Store) -> None:
    late = entry("1")
    late.status = "failure"  # type: ignore[assignment]
    assert store.commit_batch("src", [late], None, provider="prov").new == 1
    assert [r.status for r in store.search(Filters())] == ["failure"]


def test_integers_past_64_bits_are_stored_exactly(store: Store) -> None:
    # orjson refuses them; the record must still be stored, its number unchanged.
    big = 2**70 + 1
    a = entry("1", raw={"id": big, 3: "int key", "b": [big]})
    store.commit_batch("src", [a], None, provider="prov")
    (raw,) = store.db.execute("SELECT raw FROM entries").fetchone()
    assert raw == f'{{"3":"int key","b":[{big}],"id":{big}}}'
    assert [r.native_id for r in store.search(Filters(text=str(big)))] == ["1"]
    again = entry("1", raw={"b": [big], "id": big, 3: "int key"})
    assert store.commit_batch("src", [again], None, provider="prov").unchanged == 1


def test_search_text_leaves_out_timestamps_and_repeats() -> None:
    raw = {
        "at": "2026-11-13T12:43:21.286141-04:00",
        "day": "2026-11-13",
        "message": "Failed",
        "counts": [0, 0, 3641, 0],
        "note": "Timeout after 30s",
    }
    text = searchable_text(raw, known=("Failed", None))
    assert text == "0 3641 Timeout after 30s"


@pytest.mark.parametrize("text", [None, "timeout"])
@pytest.mark.parametrize(
    "narrow",
    [
        {},
        {"sources": ("a",)},
        {"statuses": ("failure",)},
        {"providers": ("p",)},
        {"sources": ("a", "b"), "statuses": ("failure",)},
        {"since": T0},
        {"since": T0, "until": T0 + timedelta(days=1), "statuses": ("pending",)},
    ],
)
def test_no_filter_turns_newest_first_into_a_sort(
    store: Store, text: str | None, narrow: dict[str, Any]
) -> None:
    # Newest first must stay a walk down the time key (or FTS5's rowids): a sort would read
    # every match before returning the first 50.
    sql, where, params, key = search_sql(Filters(text=text, **narrow))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {key} DESC LIMIT 50"
    plan = " | ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "TEMP B-TREE" not in plan, plan


def test_the_provider_comes_with_the_batch_and_prepared_rows_must_agree(store: Store) -> None:
    store.commit_batch("src", [entry("1")], None, provider="fleetit")
    row = store.get("src:1")
    assert row is not None and row.provider == "fleetit"
    # Rows prepared (and hashed) for another provider are refused, not stored under it.
    made = [store.prepare(entry("2"), "akinon")]
    with pytest.raises(ValueError, match="prepared for 'akinon', not 'fleetit'"):
        store.commit_batch("src", [entry("2")], None, provider="fleetit", prepared=made)
    assert store.get("src:2") is None
    # The same record polled through another provider is a change: it is rewritten.
    moved = store.commit_batch("src", [entry("1")], None, provider="akinon")
    assert moved.updated == 1 and store.get("src:1").provider == "akinon"  # type: ignore[union-attr]
