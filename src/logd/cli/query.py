"""Building query filters from command-line words, and following new entries."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from logd.cli.output import write_csv, write_rows, write_table
from logd.errors import QueryError
from logd.store.interface import Filters, Row
from logd.store.query_language import parse
from logd.timeparse import parse_time

if TYPE_CHECKING:  # `logd query` reads through logd.reader; this module never opens a store
    from logd.store.sqlite.store import Store


def build_filters(
    *,
    text: str | None,
    fts: bool,
    sources: Sequence[str],
    providers: Sequence[str],
    statuses: Sequence[str],
    since: str | None,
    until: str | None,
    local: bool = False,
) -> Filters:
    """Validate and convert `logd query` options (times without a zone: UTC, or local)."""
    try:
        since_at = parse_time(since, local=local) if since else None
        until_at = parse_time(until, local=local) if until else None
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


# The distinct values of an indexed column, one index seek each (a skip scan): a store of
# millions of entries and a handful of sources answers at once.
_DISTINCT = """
WITH RECURSIVE v(x) AS (
    SELECT min({col}) FROM entries
    UNION ALL SELECT (SELECT min({col}) FROM entries WHERE {col} > v.x) FROM v WHERE v.x IS NOT NULL
) SELECT x FROM v WHERE x IS NOT NULL
"""


def check_names(
    store: Store, *, sources: Sequence[str], providers: Sequence[str], config: Path | None
) -> None:
    """A `QueryError` (exit 2) for a `--source`/`--provider` name neither stored nor configured.

    A typo would otherwise match nothing and look like "no entries". Known names are those in
    the store (entries, poll runs, cursors) plus, when the config file can be read, those it
    configures; the config is read as TOML only (no pydantic, no plugins).
    """
    from logd.config.paths import configured_names

    wanted = {"source": tuple(dict.fromkeys(sources)), "provider": tuple(dict.fromkeys(providers))}
    if not any(wanted.values()):
        return
    configured = configured_names(config)
    with store.lock:
        for column, names in wanted.items():
            for name in names:
                if name in configured[column] or _stored(store, column, name):
                    continue
                known = set(configured[column])
                known.update(r[0] for r in store.db.execute(_DISTINCT.format(col=column)))
                if column == "source":
                    for table in ("poll_runs", "cursors"):
                        known.update(r[0] for r in store.db.execute(f"SELECT source FROM {table}"))
                listed = ", ".join(sorted(known)) or "none yet"
                close = difflib.get_close_matches(name, sorted(known), n=1)
                raise QueryError(
                    f"no {column} named {name!r} in the store or the config; known: {listed}",
                    hint=f"did you mean --{column} {close[0]}?" if close else None,
                )


def _stored(store: Store, column: str, name: str) -> bool:
    """Whether `name` appears in the store as a source (entries, runs, cursors) or provider."""
    if store.db.execute(f"SELECT 1 FROM entries WHERE {column} = ? LIMIT 1", [name]).fetchone():
        return True
    if column != "source":
        return False
    for table in ("poll_runs", "cursors"):
        if store.db.execute(f"SELECT 1 FROM {table} WHERE source = ? LIMIT 1", [name]).fetchone():
            return True
    return False


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
    local: bool = False,
) -> None:
    """Print the newest matches, then every new match as it is stored, until interrupted.

    New entries are found by store key (time-ordered), so an entry whose own time is older
    than what was shown is still printed when it arrives: follow also tracks the largest key.
    A table or CSV header is printed once, above the first entries printed.
    """
    initial = list(reversed(store.search(filters, limit=limit)))
    header = not _emit(initial, fmt, out, color, local, header=True)
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
                if _emit([r for _, r in rows], fmt, out, color, local, header=header):
                    header = False
    except KeyboardInterrupt:
        return


def _max_update(store: Store) -> str:
    with store.reading() as db:
        row = db.execute("SELECT coalesce(max(updated_at), '') FROM entries").fetchone()
    return str(row[0])


def _emit(
    rows: list[Row], fmt: str, out: TextIO, color: bool, local: bool, *, header: bool
) -> bool:
    """Print `rows` (with the header when `header`); whether there was anything to print."""
    if not rows:
        return False
    if fmt == "csv":
        write_csv(rows, out, header=header)
    elif fmt in ("ndjson", "json"):
        write_rows(rows, "ndjson", out)
    else:
        write_table(rows, out, color=color, local=local, header=header)
    out.flush()
    return True
