"""The SQLite store of before, made to look like the store interface's outbox (transition).

`wire_deliveries` and `logd.delivery.webhooks` use this only for a store without
`claim_due`: the SQLite store until it implements `logd.store.interface.Store`'s outbox and
calls batch hooks with a `BatchTransaction`. Then this module goes, with its SQL:

- `as_outbox(store)`: `claim_due`, `record_attempts`, … over `logd.store.sqlite.outbox`;
- `either_hook(hook)`: an interface `BatchHook` that a store calling hooks the old way,
  `hook(db, source, result)`, can call too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from logd.errors import StoreError
from logd.store.interface import Attempt, BatchHook, Delivery, NewDelivery, Row
from logd.store.query_language import Node
from logd.store.sqlite import outbox as _outbox
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.search import ENTRY_COLUMNS, fts5_match

if TYPE_CHECKING:
    import sqlite_utils

    from logd.delivery.wiring import OutboxStore
    from logd.store.sqlite.store import Store

__all__ = ["as_outbox", "either_hook"]


# -- the outbox methods ----------------------------------------------------------------------


class _SqliteOutbox:
    """`OutboxStore` over `logd.store.sqlite.outbox`. It reads on connections of its own, as
    `logd status` does, so a poll committing a large batch (holding the store's lock) never
    holds up a lane's reads. Claims are the deliverer's lane locks: one process sends."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def claim_due(
        self,
        sink: str,
        holder: str,
        ttl: float,
        now: datetime,
        *,
        ids: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Delivery]:
        with Reader(self.store.path) as reader:
            rows = _outbox.due_deliveries(reader, now, ids=ids, webhook=sink)
        return [_delivery(r) for r in rows[:limit]]

    def record_attempts(
        self,
        attempts: Sequence[Attempt],
        *,
        hold: Sequence[str] = (),
        until: datetime | None = None,
    ) -> None:
        _outbox.record_attempts(
            self.store,
            [
                _outbox.Attempt(a.delivery_id, a.state, a.status, a.error, a.next_attempt_at, a.at)
                for a in attempts
            ],
            hold=hold,
            until=until,
        )

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        with Reader(self.store.path) as reader:
            return _outbox.due_webhooks(reader, now, ids=ids)

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        with Reader(self.store.path) as reader:
            return _outbox.next_due_at(reader, sinks)

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        if by == "source":
            return _outbox.outbox_counts(self.store)
        return _outbox.webhook_counts(self.store)

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        return _outbox.make_due(self.store, ids, now)


def _delivery(row: _outbox.Delivery) -> Delivery:
    return Delivery(
        row.delivery_id,
        row.webhook,
        row.source,
        row.provider,
        row.count,
        row.body,
        row.state,
        row.attempts,
        row.next_attempt_at,
        row.last_status,
        row.last_error,
        row.created_at,
        row.updated_at,
    )


def as_outbox(store: Any) -> OutboxStore:
    """`store` itself when it has the interface's outbox, else the adapter over SQLite."""
    if hasattr(store, "claim_due"):
        return store  # type: ignore[no-any-return]
    return _SqliteOutbox(store)


# -- batch hooks called the old way --------------------------------------------------------


class _SqliteBatch:
    """`BatchTransaction` over the SQLite store's transaction of before (`db`)."""

    def __init__(self, db: sqlite_utils.Database, source: str) -> None:
        self.db = db
        self._source = source

    @property
    def source(self) -> str:
        return self._source

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        rows: dict[int, Row] = {}
        unique = list(dict.fromkeys(native_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for row in self.db.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE source = ? "
                f"AND native_id IN ({','.join('?' * len(chunk))})",
                [self._source, *chunk],
            ).fetchall():
                rows[int(row[0])] = Row.from_sql(row)
        return rows

    def matching(self, expression: Node, keys: Sequence[int]) -> set[int]:
        match = fts5_match(expression)
        found: set[int] = set()
        try:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                found.update(
                    r[0]
                    for r in self.db.execute(
                        "SELECT rowid FROM entries_fts WHERE entries_fts MATCH ? "
                        f"AND rowid IN ({','.join('?' * len(chunk))})",
                        [match, *chunk],
                    ).fetchall()
                )
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search in the batch failed: {exc}") from exc
        return found

    def enqueue(self, delivery: NewDelivery, now: datetime) -> None:
        stamp = _outbox.iso(now)
        self.db.execute(
            f"INSERT INTO {_outbox.TABLE} (delivery_id, webhook, source, provider, count, body, "
            "state, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
            [
                delivery.delivery_id,
                delivery.sink,
                delivery.source,
                delivery.provider,
                delivery.count,
                delivery.body,
                stamp,
                stamp,
                stamp,
            ],
        )


class _EitherHook:
    """An interface `BatchHook` that also takes the old call, `(db, source, result)`."""

    def __init__(self, hook: BatchHook) -> None:
        self.hook = hook

    def __call__(self, *args: Any) -> None:
        if len(args) == 3:
            db, source, result = args
            self.hook(_SqliteBatch(db, source), result)
        else:
            self.hook(*args)


def either_hook(hook: BatchHook) -> BatchHook:
    """`hook`, callable by a store of either kind."""
    return _EitherHook(hook)
