"""Building query filters from command-line words, and following new entries."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from logd.cli.output import write_csv, write_rows, write_table
from logd.errors import QueryError
from logd.store.interface import Filters, Row
from logd.store.query_language import parse
from logd.timeparse import parse_time

if TYPE_CHECKING:  # `logd query` opens its store read-only (`logd.store.open_reader`)
    from logd.store.interface import Store


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
    columns: tuple[Literal["source", "provider"], ...] = ("source", "provider")
    for column in columns:
        for name in wanted[column]:
            if name in configured[column] or store.names(column, only=name):
                continue
            known = set(configured[column]) | set(store.names(column))
            listed = ", ".join(sorted(known)) or "none yet"
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise QueryError(
                f"no {column} named {name!r} in the store or the config; known: {listed}",
                hint=f"did you mean --{column} {close[0]}?" if close else None,
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
    local: bool = False,
) -> None:
    """Print the newest matches, then every new match as it is stored, until interrupted.

    New entries are found by the store's change sequence, not by entry time: a record whose
    own time is old but which was just stored (or just turned into a failure) is news to
    someone tailing the store, and each poll reads only the changes since the last (an index
    range). A table or CSV header is printed once, above the first entries printed.
    """
    # The mark first: a change committed between it and the search shows up twice at most,
    # never not at all.
    mark = store.last_change()
    initial = list(reversed(store.search(filters, limit=limit)))
    header = not _emit(initial, fmt, out, color, local, header=True)
    polls = 0
    try:
        while max_polls is None or polls < max_polls:
            polls += 1
            time.sleep(interval)
            rows = store.changes_after(mark, filters=filters)
            if rows:
                mark = rows[-1][0]
                if _emit([r for _, r in rows], fmt, out, color, local, header=header):
                    header = False
    except KeyboardInterrupt:
        return


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
