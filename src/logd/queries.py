"""Building query filters from command-line words, and following new entries."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from .errors import QueryError
from .output import write_csv, write_rows
from .query_language import parse
from .search import Filters, Row
from .timeparse import parse_time

if TYPE_CHECKING:  # `logd query` reads through logd.reader; this module never opens a store
    from .store import Store


def build_filters(
    *,
    text: str | None,
    fts: bool,
    sources: Sequence[str],
    providers: Sequence[str],
    statuses: Sequence[str],
    since: str | None,
    until: str | None,
) -> Filters:
    """Validate and convert `logd query` options."""
    try:
        since_at = parse_time(since) if since else None
        until_at = parse_time(until) if until else None
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if text is not None and not text.strip():
        text = None
    if text is not None and fts:
        parse(text)  # a mistake in the expression is reported before any store is opened
    return Filters(
        text=text,
        fts=fts,
        sources=tuple(sources),
        providers=tuple(providers),
        statuses=tuple(dict.fromkeys(statuses)),
        since=since_at,
        until=until_at,
    )


def follow_rows(
    store: Store,
    filters: Filters,
    fmt: str,
    out: TextIO,
    *,
    color: bool = False,
    limit: int | None = 10,
    interval: float = 1.0,
    max_polls: int | None = None,
) -> None:
    """Print the newest matches, then every new match as it is stored, until interrupted.

    New entries are found by store key (time-ordered), so an entry whose own time is older
    than what was shown is still printed when it arrives: follow also tracks the largest key.
    """
    initial = list(reversed(store.search(filters, limit=limit)))
    _emit(initial, fmt, out, color, header=True)
    # Follow by change time, not entry time: a record whose own time is old but which was
    # just stored (or just turned into a failure) is news to someone tailing the store.
    mark = _max_update(store)
    polls = 0
    try:
        while max_polls is None or polls < max_polls:
            polls += 1
            time.sleep(interval)
            rows = store.updated_since(mark, filters)
            if rows:
                mark = rows[-1][0]
                _emit([r for _, r in rows], fmt, out, color, header=False)
    except KeyboardInterrupt:
        return


def _max_update(store: Store) -> str:
    with store.lock:
        row = store.db.execute("SELECT coalesce(max(updated_at), '') FROM entries").fetchone()
    return str(row[0])


def _emit(rows: list[Row], fmt: str, out: TextIO, color: bool, *, header: bool) -> None:
    if not rows:
        return
    if fmt == "csv":
        write_csv(rows, out, header=header)
    elif fmt in ("ndjson", "json"):
        write_rows(rows, "ndjson", out)
    else:
        write_rows(rows, "table", out, color=color)
    out.flush()
