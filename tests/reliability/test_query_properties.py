# ruff: noqa: RUF001 - Turkish words are part of what is typed
"""Any string a user can type is a search or one clear error, never an SQLite error.

Plain `logd query TEXT` runs whatever TEXT holds; `--fts TEXT` and a webhook's `match` run or
raise `QueryError` naming the problem (a config problem for `match`). Each example runs
against a real store, through the same code the CLI uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logd import Entry, Status
from logd.config.webhooks import match_problem
from logd.errors import QueryError
from logd.store.interface import Filters
from logd.store.query_language import fold, parse
from logd.store.sqlite.search import fts5_match
from logd.store.sqlite.store import Store

MESSAGES = [
    "Timeout while contacting Fleetio",
    "BAĞLANTI HATASI: kapı kapalı",
    "Σφάλμα σύνδεσης στο ΑΠΙ",
    "Straße gesperrt (POL-358)",
    'quote " and a:b ^x +y NEAR(a b) * — “smart”',
]
#: Pieces that mean something to the language or to FTS5, to build queries that reach them.
PIECES = [
    "AND",
    "OR",
    "NOT",
    "NEAR",
    "(",
    ")",
    '"',
    '""',
    "*",
    "message:",
    "error:",
    "search_text:",
    ":",
    "^",
    "+",
    "-",
    "{",
    "}",
    "POL-358",
    "timeout",
    "bağlantı",
    "İ",
    "ı",
    "ς",
    "ß",
    "\x00",
    "\ud800",
    "'",
    "\\",
    " ",
    "  ",
    "\t",
    "é",
    "…",
    "x*",
]
queries = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(PIECES), max_size=24).map("".join),
    st.lists(st.sampled_from(PIECES), max_size=24).map(" ".join),
)
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("props") / "logd.db"
    now = datetime.now(UTC)
    entries = []
    for i, message in enumerate(MESSAGES):
        e = Entry(
            native_id=str(i),
            timestamp=now - timedelta(minutes=i),
            status=Status.FAILURE if i % 2 else Status.SUCCESS,
            message=message,
            error=message.upper(),
            raw={"detail": message[::-1]},
        )
        entries.append(e)
    with Store(path) as s:
        s.commit_batch("src", entries, None, provider="src")
        yield s


@SETTINGS
@given(text=queries)
def test_plain_text_always_runs(store: Store, text: str) -> None:
    store.search(Filters(text=text), limit=5)
    store.search(Filters(text=text, statuses=("failure",), sources=("src",)), limit=5)


@SETTINGS
@given(text=queries)
def test_fts_text_runs_or_is_a_query_error(store: Store, text: str) -> None:
    try:
        store.search(Filters(text=text, fts=True), limit=5)
    except QueryError as exc:
        assert "\n" not in str(exc) and str(exc)


@SETTINGS
@given(text=queries)
def test_webhook_match_is_a_problem_line_or_runs(store: Store, text: str) -> None:
    problem = match_problem(text)
    if problem is not None:
        assert "\n" not in problem
        return
    node = parse(text)
    assert node is not None
    with store.lock:
        store.db.execute(
            "SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?", [fts5_match(node)]
        ).fetchall()


@SETTINGS
@given(text=st.text(max_size=40))
def test_fold_is_stable(text: str) -> None:
    # Folding folded text changes nothing a word index keeps: stored and query words agree.
    assert fold(fold(text)).lower() == fold(text).lower()


#: Letters whose Unicode category changed after 6.1, the version of SQLite's tokenizer tables:
#: Python calls them letters, SQLite separators, so alone they are not searchable.
RECLASSIFIED = {*range(0x19B0, 0x19C1), 0x19C8, 0x19C9, 0x1CF2, 0x1CF3}
COUNTER = itertools.count()
letters = st.characters(exclude_categories=("Cs",)).filter(lambda c: ord(c) not in RECLASSIFIED)


@SETTINGS
@given(message=st.text(letters, min_size=1, max_size=30))
def test_stored_text_is_found_by_itself_typed(store: Store, message: str) -> None:
    native_id = f"typed-{next(COUNTER)}"
    entry = Entry(
        native_id=native_id, timestamp=datetime.now(UTC), status="failure", message=message
    )
    store.commit_batch("typed", [entry], None, provider="typed")
    if parse(message, plain=True) is None:
        return  # no word in it: the search is every entry
    found = store.search(Filters(text=message, sources=("typed",)), limit=None)
    assert native_id in {r.native_id for r in found}


@SETTINGS
@given(text=st.text(max_size=40), repeat=st.integers(1, 20))
def test_fold_is_the_same_for_short_and_long_text(text: str, repeat: int) -> None:
    # Short text (a query) and long text (a stored record) drop marks by two routes.
    assert fold(text * repeat + " " * 256) == (fold(text) * repeat + " " * 256)
