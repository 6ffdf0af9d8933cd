"""Webhooks as they were called before sinks, kept while the SQLite store catches up.

The webhook sink is `logd.delivery.sinks.webhook`, the deliverer `logd.delivery.deliverer`,
and commands wire them with `logd.delivery.wiring.wire_deliveries`. Until the SQLite store
implements the store interface's outbox (`claim_due`, `record_attempts`, … and hooks that get
a `BatchTransaction`), this module adapts it:

- `as_outbox(store)`: the interface's outbox methods over `logd.store.sqlite.outbox`;
- `either_hook(hook)`: an interface `BatchHook` that a store calling hooks the old way,
  `hook(db, source, result)`, can call too;
- `Deliverer(settings, store)`, `outbox_hook(settings)`, `send_test(webhook)`: the old entry
  points, on top of the new parts.

Both adapters step aside for a store that has `claim_due`, so this module keeps working
after that store lands; then it goes, with its SQL.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx

from logd.config.settings import Settings, WebhookConfig
from logd.delivery import deliverer as _deliverer
from logd.delivery.deliverer import DeliveryStats, Outcome
from logd.delivery.sinks import Clock
from logd.delivery.sinks import webhook as _webhook
from logd.delivery.sinks.webhook import ERROR_TEXT_LIMIT, WebhookSink, webhook_secrets
from logd.errors import StoreError
from logd.store.interface import Attempt, BatchHook, Delivery, NewDelivery, Row
from logd.store.query_language import Node
from logd.store.sqlite import outbox as _outbox
from logd.store.sqlite.outbox import outbox_counts
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.search import ENTRY_COLUMNS, fts5_match

if TYPE_CHECKING:
    import sqlite_utils

    from logd.delivery.wiring import OutboxStore
    from logd.store.sqlite.store import Store

__all__ = [
    "ERROR_TEXT_LIMIT",
    "Deliverer",
    "DeliveryStats",
    "Outcome",
    "as_outbox",
    "either_hook",
    "outbox_counts",
    "outbox_hook",
    "send_test",
    "webhook_secrets",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the outbox methods over the SQLite store of before -----------------------------------


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


# -- batch hooks called the old way -----------------------------------------------------------


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


def either_hook(hook: BatchHook) -> _EitherHook:
    """`hook`, callable by a store of either kind."""
    return _EitherHook(hook)


# -- the old entry points -------------------------------------------------------------------


def outbox_hook(
    settings: Settings,
    *,
    clock: Clock = _utcnow,
    on_queued: Callable[[], None] | None = None,
) -> _EitherHook:
    """The webhook sink's batch hook (`sinks.webhook.outbox_hook`) for `settings.webhooks`."""
    return _EitherHook(_webhook.outbox_hook(settings.webhooks, clock=clock, on_queued=on_queued))


class Deliverer(_deliverer.Deliverer):
    """The deliverer over `settings.webhooks`' sinks and `store`'s outbox."""

    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
        backoff: float = 30.0,
        max_backoff: float = 3600.0,
        lane_budget: float = 30.0,
    ) -> None:
        super().__init__(
            [WebhookSink(w, transport=transport, clock=clock) for w in settings.webhooks],
            as_outbox(store),
            clock=clock,
            rng=rng,
            backoff=backoff,
            max_backoff=max_backoff,
            lane_budget=lane_budget,
        )
        self.settings = settings


def send_test(
    webhook: WebhookConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = _utcnow,
) -> Outcome:
    """Send one signed sample delivery to `webhook` now (not queued); what came of it."""
    delivery_id, sent = _webhook.send_test(webhook, transport=transport, clock=clock)
    state: Literal["delivered", "dead"] = "delivered" if sent.result == "delivered" else "dead"
    return Outcome(delivery_id, webhook.name, state, sent.status, sent.error)
