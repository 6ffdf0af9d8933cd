"""Searching entries: the row shape, the filters, the FTS index's upkeep and the SQL.

Entries are keyed by time (`time_key`), so newest-first is a walk down the primary key, a
time range is a key range, and FTS5 hands matches back already in that order.

The FTS index holds, for each entry, its words folded (`query_language.fold`) and tag words
naming its status, source and provider (`TAGS_SQL`), in the columns of its status
(`STATUS_GROUPS`: `failure_message`, …; any other status in `message`, `error`,
`search_text`). A search with `--status` limits its words to those columns, so FTS5 walks the
text's own doclist and never another one (a text that no entry of the status has ends after
one cheap walk); `--source` and `--provider` add tag words to the MATCH, so FTS5 skips
entries of other sources itself. `Store.search` first asks for at most `PROBE` matches of
text and status: when that is all of them, SQL checks the rest on those rows only.
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


#: Statuses whose entries' text has FTS columns of its own (`failure_message`, …); an entry of
#: any other status (success) is in `message`, `error` and `search_text`.
STATUS_GROUPS = ("failure", "pending", "invalid")
#: An entry's indexed texts, in the order of each status's columns.
TEXT_COLUMNS = ("message", "error", "search_text")


def status_columns(status: str) -> tuple[str, ...]:
    """The FTS columns holding the text of entries with `status`."""
    if status in STATUS_GROUPS:
        return tuple(f"{status}_{c}" for c in TEXT_COLUMNS)
    return TEXT_COLUMNS


#: Every column of `entries_fts` (m015), success's first.
FTS_COLUMNS = TEXT_COLUMNS + tuple(c for s in STATUS_GROUPS for c in status_columns(s))


def fts5_match(node: Node, *, grouped: bool = True) -> str:
    """The FTS5 MATCH text of a parsed query (`logd.query_language`).

    Every word is a quoted FTS5 string, so nothing a user typed is read as FTS5 syntax
    (`POL-358`, `a:b`, `^`, `+`, `NEAR`); the tree's operators are written out with their own
    parentheses, so FTS5's precedence never decides. Words arrive folded (`fold`), as the
    index holds them. A column filter (`message:`) names that column of every status
    (`grouped`), or the one column of a store from before m015.
    """
    if isinstance(node, Term):
        quoted = '"' + node.text.replace('"', '""') + '"'
        return quoted + "*" if node.prefix else quoted
    if isinstance(node, Column):
        names = [node.name]
        if grouped:
            names += [f"{s}_{node.name}" for s in STATUS_GROUPS]
        return "{" + " ".join(names) + "} : " + _group(node.expr, grouped)
    if isinstance(node, And):
        return " AND ".join(_group(n, grouped) for n in node.parts)
    if isinstance(node, Or):
        return " OR ".join(_group(n, grouped) for n in node.parts)
    return " NOT ".join(_group(n, grouped) for n in (node.keep, *node.drop))


def _group(node: Node, grouped: bool) -> str:
    text = fts5_match(node, grouped=grouped)
    return text if isinstance(node, Term) else f"({text})"


def text_match(f: Filters, *, grouped: bool = True) -> str | None:
    """The FTS5 MATCH text for `f.text` (plain words, or the `--fts` language), or None.

    None when the text has no word to search for: the query then matches every entry.
    Raises `QueryError` for an `--fts` expression that is not valid. `grouped`: the store
    has a column group per status (m015).
    """
    if not f.text:
        return None
    node = parse(f.text, plain=not f.fts)
    return None if node is None else fts5_match(node, grouped=grouped)


def status_match(f: Filters, *, status_tags: bool = False) -> str | None:
    """`f`'s text MATCH limited to the columns of the statuses it asks for, or None.

    `{failure_message failure_error failure_search_text} : (…)`: FTS5 walks the text's
    doclist and skips entries of other statuses by the column each word is in, about 60 ns
    an entry, where matching them with a tag word joined two doclists (4 times as long a
    walk for a text in 2 % of 1M entries, none of them a success: 6.4 ms against 1.3 ms).
    `status_tags` ANDs the statuses' tag words too (`status_tags_match`): for a text far
    more common than the status, an AND with the status's short doclist skips through it
    (`sync --failed`, where the column filter alone walks every success that says sync).
    """
    match = text_match(f)
    if match is None or not f.statuses:
        return match
    columns = [c for s in dict.fromkeys(f.statuses) for c in status_columns(s)]
    if set(columns) >= set(FTS_COLUMNS):
        return match
    match = "{" + " ".join(dict.fromkeys(columns)) + "} : (" + match + ")"
    tags = status_tags_match(f)
    # With a source or provider, `tag_match`'s words name the status already.
    if status_tags and tags is not None and not (f.sources or f.providers):
        match += f" AND {tags}"
    return match


def status_tags_match(f: Filters) -> str | None:
    """The tag words of `f`'s statuses ORed, when each has columns of its own (few entries)."""
    if not f.statuses or not all(s in STATUS_GROUPS for s in f.statuses):
        return None
    return "(" + " OR ".join(f"logdtags{s}" for s in dict.fromkeys(f.statuses)) + ")"


#: Every status an entry can have (`entries.Status`), for tags of "any status".
STATUSES = ("success", "failure", "pending", "invalid")


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
    """The tag words of `f`'s source and provider filters, ORed in parentheses, or None.

    Each names a status with a source, a provider or both: a source and a provider that
    never go together name words no entry has, and FTS5 answers at once. `search_sql` ANDs
    them to `status_match`'s MATCH; the status alone is its column filter.
    """
    statuses = tuple(dict.fromkeys(f.statuses)) or STATUSES
    srcs = [n.encode().hex() for n in f.sources]
    prvs = [n.encode().hex() for n in f.providers]
    if srcs and prvs:
        words = [f"logdtagpair{a}x{b}x{s}" for a in srcs for b in prvs for s in statuses]
    elif srcs or prvs:
        kind = "src" if srcs else "prv"
        words = [f"logdtag{kind}{n}x{s}" for n in srcs or prvs for s in statuses]
    else:
        return None
    return "(" + " OR ".join(words) + ")"


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
    columns = "rowid, " + ", ".join(FTS_COLUMNS)
    if delete:  # FTS5's delete command: the table's own name as a column, then the values
        columns = "entries_fts, " + columns
    command = "'delete', " if delete else ""
    if plain:
        texts_sql = ("message", "error", f"{TAGS_SQL} || ' ' || coalesce(search_text, '')")
        db.execute(
            f"INSERT INTO entries_fts ({columns}) SELECT {command}id, {_by_status(texts_sql)} "
            "FROM entries WHERE id IN (SELECT value FROM json_each(?))",
            [orjson.dumps(plain).decode()],
        )
    if folded:
        texts_sql = (
            "json_extract(value, '$[1]')",
            "json_extract(value, '$[2]')",
            f"{TAGS_SQL} || ' ' || coalesce(json_extract(value, '$[3]'), '')",
        )
        db.execute(
            f"INSERT INTO entries_fts ({columns}) SELECT {command}entries.id, "
            f"{_by_status(texts_sql)} "
            "FROM json_each(?) JOIN entries ON entries.id = json_extract(value, '$[0]')",
            [orjson.dumps(folded).decode()],
        )


def _by_status(texts: Sequence[str]) -> str:
    """The values of `FTS_COLUMNS` for a row of `entries`: `texts` in its status's columns."""
    others = ", ".join(f"'{s}'" for s in STATUS_GROUPS)
    values = [f"CASE WHEN status NOT IN ({others}) THEN {t} END" for t in texts]
    for status in STATUS_GROUPS:
        values += [f"CASE WHEN status = '{status}' THEN {t} END" for t in texts]
    return ", ".join(values)


def search_sql(
    f: Filters,
    entry_columns: str = ENTRY_COLUMNS,
    *,
    grouped: bool = True,
    status_tags: bool = False,
) -> tuple[str, list[str], list[Any], str]:
    """The SELECT, its WHERE terms and parameters, and the key column to order by.

    `grouped`: the store's FTS index has m015's column group per status and tag words;
    without them (a store a reader opened unmigrated) SQL alone checks the filters.
    `status_tags`: see `status_match`.
    """
    where: list[str] = []
    params: list[Any] = []
    columns = select_columns(entry_columns)
    match = status_match(f, status_tags=status_tags) if grouped else text_match(f, grouped=False)
    if match is not None:
        tags = tag_match(f) if grouped else None
        if tags is not None:  # FTS5 skips other sources; SQL below still checks
            match = f"({match}) AND {tags}"
        # FTS5 walks its matches in rowid order, and rowid is time order: no sort needed.
        key_col = "entries_fts.rowid"
        sql = f"SELECT {columns} FROM entries_fts JOIN entries ON entries.id = entries_fts.rowid"
        where.append("entries_fts MATCH ?")
        params.append(match)
    else:
        key_col = "entries.id"
        sql = f"SELECT {columns} FROM entries"
    # Time filters are ranges on the key, which is ordered by time.
    where_time, params_time = time_bounds(f, key_col)
    where += where_time
    params += params_time
    where_rest, params_rest = row_filters(f)
    return sql, where + where_rest, params + params_rest, key_col


def select_columns(entry_columns: str) -> str:
    """`entry_columns` qualified with the `entries` table, for a SELECT joining others."""
    return ", ".join(
        c if " " in c else f"entries.{c}" for c in (c.strip() for c in entry_columns.split(","))
    )


def time_bounds(f: Filters, key_col: str) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters of `f`'s `--since`/`--until`: a range of `key_col`."""
    where: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        where.append(f"{key_col} >= ?")
        params.append(time_key(f.since))
    if f.until is not None:
        where.append(f"{key_col} < ?")
        params.append(time_key(f.until))
    return where, params


def row_filters(f: Filters) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters checking `f`'s sources, providers and statuses on `entries`."""
    where: list[str] = []
    params: list[Any] = []
    for column, values in (
        ("source", f.sources),
        ("provider", f.providers),
        ("status", f.statuses),
    ):
        if values:
            where.append(f"entries.{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    return where, params


#: Matches `Store.search` reads of a text and of its statuses' tag words to tell whether the
#: text is far more common than the statuses (`status_match`'s `status_tags`), and how much.
SAMPLE = 200
TEXT_OUTNUMBERS = 6

#: Matches of text and status that `Store.search` reads at most before it checks sources and
#: providers in SQL on those rows alone; more, and the tag words' plan runs. Reading them is
#: the cost when there are more (`invoice --status pending` on 1M entries: 1,000 took 5 ms).
PROBE = 200


def probe_sql(f: Filters, match: str, limit: int, *, newest: bool = False) -> tuple[str, list[Any]]:
    """The rowids of at most `limit` entries matching `match` in `f`'s window, oldest first
    (FTS5 skips pages oldest first) or `newest` first."""
    where, params = time_bounds(f, "rowid")
    sql = "SELECT rowid FROM entries_fts WHERE " + " AND ".join(["entries_fts MATCH ?", *where])
    order = "DESC" if newest else ""
    return f"{sql} ORDER BY rowid {order} LIMIT ?", [match, *params, limit]
