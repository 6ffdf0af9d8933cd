# ruff: noqa: RUF001 - Turkish words are part of the corpus
"""Status, source and provider filters inside the FTS index change no search result.

A text search with `--status` limits its words to the status's FTS columns, `--source` and
`--provider` add tag words to the MATCH, and a search whose text and status match few entries
checks the rest in SQL on those alone (`Store.probe_limit`). Every cell of a grid of filter
combinations, by either plan, must return exactly what the text match filtered in SQL
returns (the plan before any of this), newest first; so must a reader of a store whose index
predates the status columns (m015).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from logd import Entry, Status
from logd.store.interface import Filters
from logd.store.sqlite.retention import apply_retention
from logd.store.sqlite.search import PROBE, text_match, time_key
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)
WORDS = ["invoice", "stock", "sync", "vehicle", "bağlantı", "σφάλμα", "Straße", "order"]
ERRORS = ["Timeout while contacting upstream", "Validation failed: sku missing", "KAPI KAPALI"]
#: (source, provider): "legacy" changed provider once, so a source is not always one provider.
SOURCES = [("fleet", "fleetit"), ("shop-1", "shopify"), ("akinon", "akinon"), ("legacy", "old")]

TEXTS = [
    ("invoice", False),
    ("timeout", False),
    ("ORD-17", False),
    ("absent", False),
    ('"sku missing"', False),
    ("BAĞLANTI", False),
    ("time* OR stock", True),
    ("error:kapı NOT sync", True),
]
STATUSES = [(), ("failure",), ("pending",), ("success",), ("invalid",), ("success", "pending")]
SOURCE_FILTERS = [(), ("fleet",), ("fleet", "legacy"), ("nowhere",)]
PROVIDER_FILTERS = [(), ("fleetit",), ("akinon", "new")]
WINDOWS = [(None, None), (3, None), (6, 2)]  # days ago: since, until


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    rng = random.Random(7)
    path: Path = tmp_path_factory.mktemp("grid") / "logd.db"
    with Store(path) as s:
        for source, provider in SOURCES:
            batches: dict[str, list[Entry]] = {}  # by provider
            for i in range(150):
                roll = rng.random()
                status = (
                    Status.FAILURE
                    if roll < 0.2
                    else Status.PENDING
                    if roll < 0.3
                    else Status.INVALID
                    if roll < 0.35
                    else Status.SUCCESS
                )
                e = Entry(
                    native_id=str(i),
                    timestamp=NOW - timedelta(hours=rng.random() * 24 * 10),
                    status=status,
                    message=" ".join(rng.choices(WORDS, k=3)),
                    error=rng.choice(ERRORS) if status is Status.FAILURE else None,
                    raw={"order": f"ORD-{i}"},
                )
                polled_by = "new" if source == "legacy" and i % 2 else provider
                batches.setdefault(polled_by, []).append(e)
            for polled_by, batch in batches.items():
                s.commit_batch(source, batch, None, provider=polled_by)
        # Changes after the first write go through the update path: statuses move, a
        # pending call fails, and retention deletes the oldest day.
        moved = []
        for i in range(0, 150, 7):
            e = Entry(
                native_id=str(i),
                timestamp=NOW - timedelta(hours=i),
                status=Status.FAILURE,
                message="sync order invoice",
                error="Timeout after retry",
            )
            moved.append(e)
        s.commit_batch("fleet", moved, None, provider="fleetit")
        apply_retention(s, 9 * 86_400)
        yield s


def expected(store: Store, f: Filters, limit: int | None) -> list[str]:
    """The plan before tags: the text's MATCH alone, every other filter checked in SQL."""
    where, params = ["entries_fts MATCH ?"], [text_match(f)]
    for column, values in (
        ("source", f.sources),
        ("provider", f.providers),
        ("status", f.statuses),
    ):
        if values:
            where.append(f"entries.{column} IN ({','.join('?' * len(values))})")
            params += values
    if f.since is not None:
        where.append("entries.id >= ?")
        params.append(time_key(f.since))
    if f.until is not None:
        where.append("entries.id < ?")
        params.append(time_key(f.until))
    sql = (
        "SELECT entries.source || ':' || entries.native_id FROM entries_fts JOIN entries "
        f"ON entries.id = entries_fts.rowid WHERE {' AND '.join(where)} ORDER BY entries.id DESC"
    )
    rows = [r[0] for r in store.db.execute(sql, params).fetchall()]
    return rows[:limit] if limit else rows


@pytest.mark.parametrize(("text", "fts"), TEXTS)
def test_every_filter_combination_returns_what_it_did(
    store: Store, text: str, fts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = 0
    #: Cells with at most `limit` matches (all found oldest first) and with more (newest first).
    paths = {"few": 0, "more": 0}
    for statuses, sources, providers, (since, until) in itertools.product(
        STATUSES, SOURCE_FILTERS, PROVIDER_FILTERS, WINDOWS
    ):
        f = Filters(
            text=text,
            fts=fts,
            statuses=statuses,
            sources=sources,
            providers=providers,
            since=None if since is None else NOW - timedelta(days=since),
            until=None if until is None else NOW - timedelta(days=until),
        )
        every = expected(store, f, None)
        # probe 2: text and status match more than that, so the tag words' plan runs; dense:
        # the text outnumbers the statuses, so their tag words join the MATCH.
        for limit, probe, dense in ((None, PROBE, False), (5, PROBE, False), (5, 2, False)) + (
            ((5, PROBE, True),) if statuses else ()
        ):
            store.probe_limit = probe
            if dense:
                monkeypatch.setattr(store, "_text_outnumbers_statuses", lambda f: True)
            got = [r.id for r in store.search(f, limit=limit)]
            monkeypatch.undo()
            assert got == every[:limit], (f, limit, probe, dense)
            cells += bool(got)
            if limit:
                paths["more" if len(every) > limit else "few"] += 1
    store.probe_limit = PROBE
    assert cells > 20 or text == "absent"  # the grid is not all empty cells
    assert paths["few"] > 0 and (paths["more"] > 0 or text in ("absent", "ORD-17"))


def test_status_and_sources_reach_fts5_as_columns_and_tag_words(store: Store) -> None:
    # The MATCH names the statuses' columns and the sources' tags: FTS5 skips the rest itself.
    from logd.store.sqlite.search import search_sql

    _, _, params, _ = search_sql(
        Filters(text="sync", statuses=("failure",), sources=("fleet",), providers=("fleetit",))
    )
    assert params[0] == (
        '({failure_message failure_error failure_search_text} : ("sync")) '
        "AND (logdtagpair666c656574x666c6565746974xfailure)"
    )

    def count(sql: str, *args: str) -> int:
        return int(store.db.execute(sql, args).fetchone()[0])

    failures = count("SELECT count(*) FROM entries WHERE status = 'failure'")
    in_columns = "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH ?"
    assert count(in_columns, "{failure_search_text} : logdtagsfailure") == failures > 0
    assert count(in_columns, "{message error search_text} : logdtagsfailure") == 0
    # A plain word matches in every status's columns, as Datasette and sqlite-utils ask.
    assert count(in_columns, '"timeout"') == count(
        "SELECT count(*) FROM entries WHERE error LIKE '%timeout%'"
    )
    # FTS5 reads the content table by the index's column names: each is one of `entries`.
    assert count("SELECT count(*) FROM entries_fts") == count("SELECT count(*) FROM entries")
    assert count("SELECT count(*) FROM entries_fts WHERE failure_error IS NOT NULL") == count(
        "SELECT count(*) FROM entries WHERE status = 'failure' AND error IS NOT NULL"
    )


def test_a_store_indexed_before_status_columns_is_read_and_migrated_alike(
    store: Store, tmp_path: Path
) -> None:
    from logd.store.query_language import fold
    from logd.store.sqlite.migrations import MIGRATIONS
    from logd.store.sqlite.reader import Reader
    from logd.store.sqlite.search import TAGS_SQL

    # A store as m014 left it: one FTS column each for message, error and search_text.
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    old.execute("CREATE TABLE _logd_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = [fn.__name__ for fn in MIGRATIONS].index("m015_fts_columns_per_status")
    for fn in MIGRATIONS[:done]:
        fn(old)
        old.execute("INSERT INTO _logd_migrations VALUES (?, '')", [fn.__name__])
    old.execute(f"ATTACH DATABASE '{store.path}' AS new")
    names = [r[1] for r in old.execute("PRAGMA table_info(entries)").fetchall()]
    old.execute(
        f"INSERT INTO entries ({', '.join(names)}) SELECT {', '.join(names)} FROM new.entries"
    )
    for key, message, error, text, tags in old.execute(
        f"SELECT id, message, error, search_text, {TAGS_SQL} FROM entries"
    ).fetchall():
        old.execute(  # folded, as m006 indexed
            "INSERT INTO entries_fts (rowid, message, error, search_text) VALUES (?, ?, ?, ?)",
            [key, fold(message), error and fold(error), f"{tags} {fold(text or '')}"],
        )
    old.conn.commit()
    old.execute("DETACH DATABASE new")
    old.close()
    cells = [
        Filters(text=text, fts=fts, statuses=statuses, sources=sources)
        for text, fts in TEXTS
        for statuses in STATUSES
        for sources in SOURCE_FILTERS[:3]
    ]
    want = [[r.id for r in store.search(f, limit=5)] for f in cells]
    reader = Reader(path)  # readers never migrate: this one checks the filters in SQL
    assert not reader.grouped_fts
    assert [[r.id for r in reader.search(f, limit=5)] for f in cells] == want
    reader.close()
    with Store(path) as migrated:
        assert migrated.grouped_fts
        assert [[r.id for r in migrated.search(f, limit=5)] for f in cells] == want
        migrated.db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")
    reader = Reader(path)
    assert reader.grouped_fts
    reader.close()


def test_a_text_far_more_common_than_its_status_is_matched_with_the_status_tag(
    tmp_path: Path,
) -> None:
    # 1,200 successes that say sync, 150 failures that say timeout, 150 pending.
    with Store(tmp_path / "logd.db") as s:
        batch = []
        for i in range(1500):
            status = (
                Status.SUCCESS if i % 10 < 8 else Status.FAILURE if i % 10 == 8 else Status.PENDING
            )
            e = Entry(
                native_id=str(i),
                timestamp=NOW - timedelta(minutes=i),
                status=status,
                message="sync done" if status is Status.SUCCESS else "call",
                error="timeout" if status is Status.FAILURE else None,
            )
            batch.append(e)
        s.commit_batch("fleet", batch, None, provider="fleetit")
        assert s._text_outnumbers_statuses(Filters(text="sync", statuses=("failure",)))
        # 150 pending entries, fewer than the sample: their tag is the shorter walk.
        assert s._text_outnumbers_statuses(Filters(text="call", statuses=("pending",)))
        # As common as the status, or rarer: its columns alone are the shorter walk.
        assert not s._text_outnumbers_statuses(Filters(text="timeout", statuses=("pending",)))
        assert not s._text_outnumbers_statuses(Filters(text="sync", statuses=("success",)))
        assert s.search(Filters(text="sync", statuses=("failure",))) == []
        assert len(s.search(Filters(text="call", statuses=("pending",)), limit=None)) == 150
