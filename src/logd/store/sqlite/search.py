"""Searching entries: the row shape, the filters, the FTS index's upkeep and the SQL.

Entries are keyed by time (`time_key`), so newest-first is a walk down the primary key, a
time range is a key range, and FTS5 hands matches back already in that order.

The FTS index holds, for each entry, its words folded (`query_language.fold`) and tag words
naming its status, source and provider (`TAGS_SQL`). A text search with `--status`,
`--source` or `--provider` adds those tags to the MATCH, so FTS5 itself skips entries of
other statuses and sources (each one checked afterwards in SQL was a row read: a common word
that no failure holds read them all).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from logd.store.interface import Filters
from logd.store.query_language import And, Column, Node, Or, Term, fold, parse

if TYPE_CHECKING:  # the read path runs SQL on a plain sqlite3 connection
    import sqlite_utils

SLOTS = 1000  # entries that can share one microsecond
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ENTRY_COLUMNS = (
    "id, source, provider, native_id, timestamp, status, message, error, entity_type, "
    "entity_id, raw, details, timestamp_observed"
)
#: ENTRY_COLUMNS for a store that predates migration m007 (read without migrating).
LEGACY_ENTRY_COLUMNS = ENTRY_COLUMNS.replace("timestamp_observed", "0 AS timestamp_observed")


def time_key(when: datetime) -> int:
    """The first primary key for an entry at `when`: microseconds since the epoch * 1000."""
    if when.tzinfo is None:  # naive: local time, as astimezone reads it
        when = when.astimezone(UTC)
    # Aware datetimes subtract in UTC; one timedelta division is 5 times faster than the fields.
    return (when - EPOCH) // MICROSECOND * SLOTS


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


#: Every status an entry can have (`entries.Status`), for tags of "any status".
STATUSES = ("success", "failure", "pending")


#: The tag words of the `entries` row in scope: its status, then its source, its provider and
#: both with its status (`logdtags<status>`, `logdtagsrc<source>x<status>`,
#: `logdtagprv<provider>x<status>`, `logdtagpair<source>x<provider>x<status>`). Names are hex,
#: so any name is one word of letters and digits; the `logdtag` start keeps them apart from
#: real words. `tag_match` writes the same words for a query's filters.
TAGS_SQL = (
    "'logdtags' || status || ' logdtagsrc' || lower(hex(source)) || 'x' || status || "
    "' logdtagprv' || lower(hex(provider)) || 'x' || status || "
    "' logdtagpair' || lower(hex(source)) || 'x' || lower(hex(provider)) || 'x' || status"
)


def tag_match(f: Filters) -> str | None:
    """What `f`'s status, source and provider filters add to the text's MATCH, or None.

    `AND` an OR of tag words, each naming a status with a source, a provider or both: a
    source and a provider that never go together name words no entry has, and FTS5 answers
    at once. FTS5 walks newest first by reading doclists through, so a status every entry
    but a few has (success) is asked as `NOT` the others: reading the few is what costs.
    """
    asked = tuple(dict.fromkeys(f.statuses))
    statuses = asked or STATUSES
    srcs = [n.encode().hex() for n in f.sources]
    prvs = [n.encode().hex() for n in f.providers]
    if srcs and prvs:
        words = [f"logdtagpair{a}x{b}x{s}" for a in srcs for b in prvs for s in statuses]
    elif srcs or prvs:
        kind = "src" if srcs else "prv"
        words = [f"logdtag{kind}{n}x{s}" for n in srcs or prvs for s in statuses]
    elif not asked or set(asked) >= set(STATUSES):
        return None
    elif "success" in asked:
        others = [f"logdtags{s}" for s in STATUSES if s not in asked]
        return "NOT (" + " OR ".join(others) + ")"
    else:
        words = [f"logdtags{s}" for s in asked]
    return "AND (" + " OR ".join(words) + ")"


#: An entry's indexed text: message, error, search_text.
Texts = tuple[str, str | None, str | None]


def index_text(
    db: sqlite_utils.Database,
    keys: list[int],
    texts: Sequence[Texts] | None = None,
    *,
    delete: bool = False,
) -> None:
    """Add these stored entries to the FTS index, or with `delete` take them out of it.

    What is indexed (folded words, tag words) is computed here, which no SQL trigger could
    do, so the store keeps the index in step itself: on insert here, on update and delete
    before the row changes (m006 dropped the triggers). FTS5 takes a row out only given the
    values it indexed, so both ways compute them alike from the row. `texts` are the rows'
    stored texts in `keys` order when the caller has them, else they are read back. ASCII
    text folds to itself: those rows are indexed straight from the table in one statement.
    """
    if not keys:
        return
    # Tag words go first in `search_text`: their positions (0 to 3) take one byte each.
    if texts is None:
        (found,) = db.execute(
            "SELECT json_group_array(json_array(id, message, error, search_text)) "
            "FROM entries WHERE id IN (SELECT value FROM json_each(?))",
            [orjson.dumps(keys).decode()],
        ).fetchone()
        rows = orjson.loads(found)
        keys = [row[0] for row in rows]
        texts = [(row[1], row[2], row[3]) for row in rows]
    plain: list[int] = []
    folded: list[list[Any]] = []
    for key, (message, error, text) in zip(keys, texts, strict=True):
        # isascii() reads a flag CPython keeps on each string: free for the common case.
        if message.isascii() and (error is None or error.isascii()) and (text or "").isascii():
            plain.append(key)
        else:
            folded.append(
                [key, fold(message), None if error is None else fold(error), text and fold(text)]
            )
    columns = "rowid, message, error, search_text"
    if delete:  # FTS5's delete command: the table's own name as a column, then the values
        columns = "entries_fts, " + columns
    command = "'delete', " if delete else ""
    if plain:
        db.execute(
            f"INSERT INTO entries_fts ({columns}) SELECT {command}id, message, error, "
            f"{TAGS_SQL} || ' ' || coalesce(search_text, '') "
            "FROM entries WHERE id IN (SELECT value FROM json_each(?))",
            [orjson.dumps(plain).decode()],
        )
    if folded:
        db.execute(
            f"INSERT INTO entries_fts ({columns}) SELECT {command}entries.id, "
            "json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
            f"{TAGS_SQL} || ' ' || coalesce(json_extract(value, '$[3]'), '') "
            "FROM json_each(?) JOIN entries ON entries.id = json_extract(value, '$[0]')",
            [orjson.dumps(folded).decode()],
        )


def search_sql(
    f: Filters, entry_columns: str = ENTRY_COLUMNS
) -> tuple[str, list[str], list[Any], str]:
    """The SELECT, its WHERE terms and parameters, and the key column to order by."""
    where: list[str] = []
    params: list[Any] = []
    columns = ", ".join(
        c if " " in c else f"entries.{c}" for c in (c.strip() for c in entry_columns.split(","))
    )
    match = text_match(f)
    if match is not None:
        tags = tag_match(f)
        if tags is not None:  # FTS5 skips other statuses and sources; SQL below still checks
            match = f"({match}) {tags}"
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
