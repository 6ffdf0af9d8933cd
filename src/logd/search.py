"""Reading entries back: the row shape, the filters, and the SQL that walks the time key.

Entries are keyed by time (`time_key`), so newest-first is a walk down the primary key, a
time range is a key range, and FTS5 hands matches back already in that order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .query_language import And, Column, Node, Or, Term, parse

SLOTS = 1000  # entries that can share one microsecond
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ENTRY_COLUMNS = (
    "id, source, provider, native_id, timestamp, status, message, error, entity_type, "
    "entity_id, raw, details"
)


def time_key(when: datetime) -> int:
    """The first primary key for an entry at `when`: microseconds since the epoch * 1000."""
    if when.tzinfo is None:  # naive: local time, as astimezone reads it
        when = when.astimezone(UTC)
    # Aware datetimes subtract in UTC; one timedelta division is 5 times faster than the fields.
    return (when - EPOCH) // MICROSECOND * SLOTS


@dataclass
class Row:
    """One stored entry as read back."""

    id: str
    source: str
    provider: str
    native_id: str
    timestamp: str
    status: str
    message: str
    error: str | None
    entity_type: str | None
    entity_id: str | None
    raw: Any
    details: Any

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used by `query --format json` and webhook bodies."""
        return {
            "id": self.id,
            "source": self.source,
            "provider": self.provider,
            "native_id": self.native_id,
            "timestamp": self.timestamp,
            "status": self.status,
            "message": self.message,
            "error": self.error,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "raw": self.raw,
            "details": self.details,
        }

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> Row:
        """Build from a `SELECT {ENTRY_COLUMNS}` row."""
        (_, source, provider, native_id, ts, status, message, error, etype, eid, raw, details) = row
        return cls(
            id=f"{source}:{native_id}",
            source=source,
            provider=provider,
            native_id=native_id,
            timestamp=ts,
            status=status,
            message=message,
            error=error,
            entity_type=etype,
            entity_id=eid,
            raw=json.loads(raw) if raw is not None else None,
            details=json.loads(details) if details is not None else None,
        )


@dataclass
class Filters:
    """What `logd query` narrows by; all optional."""

    #: Words to search for: plain words and "phrases", or with `fts` the expression language
    #: of `logd.query_language` (AND, OR, NOT, prefix*, columns).
    text: str | None = None
    fts: bool = False
    sources: Sequence[str] = ()
    providers: Sequence[str] = ()
    statuses: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


def fts5_match(node: Node) -> str:
    """The FTS5 MATCH text of a parsed query (`logd.query_language`).

    Every word is a quoted FTS5 string, so nothing a user typed is read as FTS5 syntax
    (`POL-358`, `a:b`, `^`, `+`, `NEAR`); the tree's operators are written out with their own
    parentheses, so FTS5's precedence never decides. Words arrive folded (`fold`), as the
    index holds them.
    """
    if isinstance(node, Term):
        quoted = '"' + node.text.replace('"', '""') + '"'
        return quoted + "*" if node.prefix else quoted
    if isinstance(node, Column):
        return f"{node.name} : {_group(node.expr)}"
    if isinstance(node, And):
        return " AND ".join(map(_group, node.parts))
    if isinstance(node, Or):
        return " OR ".join(map(_group, node.parts))
    return " NOT ".join(map(_group, (node.keep, *node.drop)))


def _group(node: Node) -> str:
    text = fts5_match(node)
    return text if isinstance(node, Term) else f"({text})"


def text_match(f: Filters) -> str | None:
    """The FTS5 MATCH text for `f.text` (plain words, or the `--fts` language), or None.

    None when the text has no word to search for: the query then matches every entry.
    Raises `QueryError` for an `--fts` expression that is not valid.
    """
    if not f.text:
        return None
    node = parse(f.text, plain=not f.fts)
    return None if node is None else fts5_match(node)


def search_sql(f: Filters) -> tuple[str, list[str], list[Any], str]:
    """The SELECT, its WHERE terms and parameters, and the key column to order by."""
    where: list[str] = []
    params: list[Any] = []
    columns = ", ".join(f"entries.{c.strip()}" for c in ENTRY_COLUMNS.split(","))
    match = text_match(f)
    if match is not None:
        # FTS5 walks its matches in rowid order, and rowid is time order: no sort needed.
        key_col = "entries_fts.rowid"
        sql = f"SELECT {columns} FROM entries_fts JOIN entries ON entries.id = entries_fts.rowid"
        where.append("entries_fts MATCH ?")
        params.append(match)
    else:
        key_col = "entries.id"
        sql = f"SELECT {columns} FROM entries"
    # Time filters are ranges on the key, which is ordered by time.
    if f.since is not None:
        where.append(f"{key_col} >= ?")
        params.append(time_key(f.since))
    if f.until is not None:
        where.append(f"{key_col} < ?")
        params.append(time_key(f.until))
    for column, values in (
        ("source", f.sources),
        ("provider", f.providers),
        ("status", f.statuses),
    ):
        if values:
            where.append(f"entries.{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    return sql, where, params, key_col
