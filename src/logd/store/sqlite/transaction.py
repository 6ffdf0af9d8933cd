"""What a batch hook gets inside the SQLite transaction that commits a batch
(`logd.store.interface.BatchTransaction`): the batch's rows, search, the outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from logd.errors import StoreError
from logd.store.interface import NewDelivery, Row
from logd.store.sqlite import outbox
from logd.store.sqlite.search import fts5_match
from logd.store.sqlite.statements import IN_LIST, chunks

if TYPE_CHECKING:
    import sqlite_utils

    from logd.store.query_language import Node


class SqliteBatchTransaction:
    """A `BatchTransaction` on the connection of a running `Store.commit_batch`."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        source: str,
        provider: str,
        entry_columns: str,
        error: Callable[[sqlite3.Error], StoreError],
    ) -> None:
        self._db = db
        self._source = source
        self._provider = provider
        self._columns = entry_columns
        self._error = error

    @property
    def source(self) -> str:
        """The source whose batch this is."""
        return self._source

    @property
    def provider(self) -> str:
        """The provider the batch's source polls through."""
        return self._provider

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        """The stored rows of these entries of this source, by key (keys ascend with time)."""
        rows: dict[int, Row] = {}
        sql = f"SELECT {self._columns} FROM entries WHERE source = ? AND native_id IN {IN_LIST}"
        for chunk in chunks(list(dict.fromkeys(native_ids))):
            for row in self._db.execute(sql, [self._source, *chunk]).fetchall():
                rows[int(row[0])] = Row.from_sql(row)
        return rows

    def matching(self, expression: Node, keys: Sequence[int]) -> set[int]:
        """Which of `keys` hold entries matching `expression`, by the FTS index `query` reads.

        Raises StoreError when SQLite fails (the expression, checked when parsed, compiles
        to a MATCH FTS5 accepts); the transaction can go on.
        """
        match = fts5_match(expression)
        found: set[int] = set()
        try:
            sql = f"SELECT rowid FROM entries_fts WHERE entries_fts MATCH ? AND rowid IN {IN_LIST}"
            for chunk in chunks(keys):
                found.update(r[0] for r in self._db.execute(sql, [match, *chunk]).fetchall())
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return found

    def enqueue(self, delivery: NewDelivery, now: datetime) -> None:
        """Queue a delivery, due at `now`; it commits or rolls back with the batch."""
        outbox.enqueue(self._db, delivery, now)
