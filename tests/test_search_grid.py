# ruff: noqa: RUF001 - Turkish words are part of the corpus
"""Status, source and provider filters inside the FTS index change no search result.

A text search with `--status`, `--source` or `--provider` adds tag words to the MATCH so FTS5
skips other entries itself; every cell of a grid of filter combinations must return exactly
what the text match filtered in SQL returns (the plan before the tags), newest first.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from logd import Entry, Status
from logd.store.interface import Filters
from logd.store.sqlite.retention import apply_retention
from logd.store.sqlite.search import text_match, time_key
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
STATUSES = [(), ("failure",), ("pending",), ("success", "pending")]
SOURCE_FILTERS = [(), ("fleet",), ("fleet", "legacy"), ("nowhere",)]
PROVIDER_FILTERS = [(), ("fleetit",), ("akinon", "new")]
WINDOWS = [(None, None), (3, None), (6, 2)]  # days ago: since, until


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    rng = random.Random(7)
    path: Path = tmp_path_factory.mktemp("grid") / "logd.db"
    with Store(path) as s:
        for source, provider in SOURCES:
            batch = []
            for i in range(150):
                roll = rng.random()
                status = (
                    Status.FAILURE
                    if roll < 0.2
                    else Status.PENDING
                    if roll < 0.3
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
                e.source = source
                e.provider = "new" if source == "legacy" and i % 2 else provider
                batch.append(e)
            s.commit_batch(source, batch, None)
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
            e.source, e.provider = "fleet", "fleetit"
            moved.append(e)
        s.commit_batch("fleet", moved, None)
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
def test_every_filter_combination_returns_what_it_did(store: Store, text: str, fts: bool) -> None:
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
        for limit in (None, 5):
            got = [r.id for r in store.search(f, limit=limit)]
            assert got == expected(store, f, limit), (f, limit)
            cells += bool(got)
            if limit:
                paths["more" if len(expected(store, f, None)) > limit else "few"] += 1
    assert cells > 20 or text == "absent"  # the grid is not all empty cells
    assert paths["few"] > 0 and (paths["more"] > 0 or text in ("absent", "ORD-17"))


def test_filters_reach_fts5_as_tag_words(store: Store) -> None:
    # The MATCH names the statuses and sources asked for, so FTS5 skips the rest itself.
    from logd.store.sqlite.search import search_sql

    _, _, params, _ = search_sql(
        Filters(text="sync", statuses=("failure",), sources=("fleet",), providers=("fleetit",))
    )
    assert params[0] == ('("sync") AND (logdtagpair666c656574x666c6565746974xfailure)')
    matched = store.db.execute(
        "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'logdtagsfailure'"
    ).fetchone()[0]
    failures = store.db.execute("SELECT count(*) FROM entries WHERE status = 'failure'").fetchone()[
        0
    ]
    assert matched == failures > 0
