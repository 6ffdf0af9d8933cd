"""The webhook outbox table: queueing deliveries, reading them back, recording attempts.

Rows are queued inside the batch transaction that stored the failures they report, so a
crash can delay a delivery but never lose it. Only SQL lives here (no HTTP), so `logd status`
and `logd webhooks list` read the outbox without importing the delivery machinery.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from logd.store.sqlite.store import Store

if TYPE_CHECKING:  # annotations only: `logd status` reads the outbox without sqlite_utils
    import sqlite_utils

TABLE = "webhook_outbox"
STATES = ("pending", "dead", "done")
COLUMNS = (
    "delivery_id, webhook, source, provider, count, body, state, attempts, next_attempt_at, "
    "last_status, last_error, created_at, updated_at"
)


def iso(when: datetime) -> str:
    """The stored form of a time: UTC ISO 8601 with microseconds, so strings sort as times."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def new_delivery_id() -> str:
    """A fresh delivery id; it stays the same on every retry of that delivery."""
    return f"dlv_{uuid.uuid4().hex}"


def encode_body(
    delivery_id: str, webhook: str, source: str, provider: str, entries: Sequence[dict[str, Any]]
) -> bytes:
    """The exact bytes sent and signed: compact, ASCII-only JSON.

    Compact separators and ASCII escapes make FleetIT's verification sample, which re-serialises
    the parsed body with `json.dumps(payload, separators=(',', ':'))`, reproduce these bytes.
    """
    payload = {
        "delivery_id": delivery_id,
        "webhook": webhook,
        "source": source,
        "provider": provider,
        "count": len(entries),
        "entries": list(entries),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def enqueue(
    db: sqlite_utils.Database,
    *,
    webhook: str,
    source: str,
    provider: str,
    entries: Sequence[dict[str, Any]],
    now: datetime,
) -> str:
    """Queue one delivery of `entries` (inside the caller's transaction); return its id."""
    delivery_id = new_delivery_id()
    body = encode_body(delivery_id, webhook, source, provider, entries)
    stamp = iso(now)
    db.execute(
        f"INSERT INTO {TABLE} (delivery_id, webhook, source, provider, count, body, state, "
        "attempts, next_attempt_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        [delivery_id, webhook, source, provider, len(entries), body, stamp, stamp, stamp],
    )
    return delivery_id


@dataclass
class Delivery:
    """One outbox row."""

    delivery_id: str
    webhook: str
    source: str
    provider: str
    count: int
    body: bytes
    state: str
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> Delivery:
        """Build from a `SELECT {COLUMNS}` row."""
        values = list(row)
        values[5] = bytes(values[5]) if not isinstance(values[5], str) else values[5].encode()
        return cls(*values)

    def summary(self) -> dict[str, Any]:
        """The row for `logd webhooks list` (the body left out)."""
        return {
            "delivery_id": self.delivery_id,
            "webhook": self.webhook,
            "source": self.source,
            "count": self.count,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at if self.state == "pending" else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
        }


def has_outbox(store: Store) -> bool:
    """True when the store has the outbox table (a store opened read-only may predate it)."""
    with store.reading() as db:
        return bool(db[TABLE].exists())


def outbox_counts(store: Store) -> dict[str, dict[str, int]]:
    """Per source: pending, dead and done delivery counts."""
    return _counts(store, "source")


def webhook_counts(store: Store) -> dict[str, dict[str, int]]:
    """Per webhook: pending, dead and done delivery counts."""
    return _counts(store, "webhook")


def _counts(store: Store, by: str) -> dict[str, dict[str, int]]:
    if not has_outbox(store):
        return {}
    out: dict[str, dict[str, int]] = {}
    with store.reading() as db:
        rows = db.execute(
            f"SELECT {by}, state, count(*) FROM {TABLE} GROUP BY {by}, state"
        ).fetchall()
    for key, state, n in rows:
        out.setdefault(key, dict.fromkeys(STATES, 0))[state] = n
    return out


def list_deliveries(
    store: Store,
    *,
    state: str | None = None,
    ids: Sequence[str] = (),
    limit: int | None = None,
) -> list[Delivery]:
    """Outbox rows, newest first, optionally only one state or the given delivery ids."""
    if not has_outbox(store):
        return []
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if ids:
        where.append(f"delivery_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    sql = f"SELECT {COLUMNS} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    with store.reading() as db:
        return [Delivery.from_sql(r) for r in db.execute(sql, params).fetchall()]


def due_deliveries(
    store: Store, now: datetime, *, ids: Sequence[str] = (), webhook: str | None = None
) -> list[Delivery]:
    """Pending rows whose next attempt is due, oldest first (only `ids`, `webhook` when given).

    A webhook's lane is first in, first out: without `ids`, only the rows queued before its
    oldest row that is waiting for a retry are due, so rows queued after a failed one wait
    behind it instead of each spending a timeout on an endpoint that is down.
    """
    if not has_outbox(store):
        return []
    sql, params = _due_where(now, ids, webhook)
    with store.reading() as db:
        rows = db.execute(f"SELECT {COLUMNS} {sql} ORDER BY id", params).fetchall()
    return [Delivery.from_sql(r) for r in rows]


def due_webhooks(store: Store, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
    """The webhooks with a pending delivery due (among `ids` when given); no bodies read."""
    if not has_outbox(store):
        return []
    sql, params = _due_where(now, ids, None)
    with store.reading() as db:
        rows = db.execute(f"SELECT DISTINCT webhook {sql}", params).fetchall()
    return sorted(r[0] for r in rows)


def _due_where(now: datetime, ids: Sequence[str], webhook: str | None) -> tuple[str, list[Any]]:
    sql = f"FROM {TABLE} WHERE state = 'pending' AND next_attempt_at <= ?"
    params: list[Any] = [iso(now)]
    if webhook is not None:
        sql += " AND webhook = ?"
        params.append(webhook)
        if not ids:
            sql += (
                f" AND id < coalesce((SELECT min(id) FROM {TABLE} WHERE state = 'pending' "
                "AND webhook = ? AND next_attempt_at > ?), 9e18)"
            )
            params += [webhook, iso(now)]
    if ids:
        sql += f" AND delivery_id IN ({','.join('?' * len(ids))})"
        params.extend(ids)
    return sql, params


def next_due_at(store: Store, webhooks: Sequence[str]) -> datetime | None:
    """When the next delivery to one of `webhooks` is due (its lane's oldest pending row's next
    attempt: the lane is first in, first out), or None when nothing is pending."""
    if not webhooks or not has_outbox(store):
        return None
    with store.reading() as db:
        value = db.execute(
            f"SELECT min(next_attempt_at) FROM {TABLE} WHERE id IN (SELECT min(id) FROM {TABLE} "
            f"WHERE state = 'pending' AND webhook IN ({','.join('?' * len(webhooks))}) "
            "GROUP BY webhook)",
            list(webhooks),
        ).fetchone()[0]
    return datetime.fromisoformat(value) if value else None


@dataclass
class Attempt:
    """One attempt's outcome, as recorded: the new state, the HTTP status, what went wrong."""

    delivery_id: str
    state: str  # the stored state: pending (to retry), done or dead
    status: int | None
    error: str | None
    next_attempt_at: datetime
    at: datetime


def record_attempts(
    store: Store,
    attempts: Sequence[Attempt],
    *,
    hold: Sequence[str] = (),
    until: datetime | None = None,
) -> None:
    """Record attempts, and hold the pending deliveries `hold` until `until`: one transaction."""
    if not attempts and not (hold and until):
        return
    with store.transaction() as db:
        db.conn.executemany(
            f"UPDATE {TABLE} SET state = ?, attempts = attempts + 1, last_status = ?, "
            "last_error = ?, next_attempt_at = ?, updated_at = ? WHERE delivery_id = ?",
            [
                [a.state, a.status, a.error, iso(a.next_attempt_at), iso(a.at), a.delivery_id]
                for a in attempts
            ],
        )
        if hold and until is not None:
            _postpone(db, hold, until)


def _postpone(db: sqlite_utils.Database, ids: Sequence[str], until: datetime) -> None:
    """Hold pending deliveries until at least `until` (their attempts are not counted)."""
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.execute(
            f"UPDATE {TABLE} SET next_attempt_at = max(next_attempt_at, ?) "
            f"WHERE state = 'pending' AND delivery_id IN ({','.join('?' * len(chunk))})",
            [iso(until), *chunk],
        )


def make_due(store: Store, ids: Sequence[str], now: datetime) -> list[str]:
    """Make deliveries due now: the named ones (dead included), else every pending one.

    Returns the ids made due; named ids that are unknown or already done are left out.
    """
    if not has_outbox(store):
        return []
    stamp = iso(now)
    with store.transaction() as db:
        if ids:
            marks = ",".join("?" * len(ids))
            found = [
                r[0]
                for r in db.execute(
                    f"SELECT delivery_id FROM {TABLE} WHERE state IN ('pending', 'dead') "
                    f"AND delivery_id IN ({marks})",
                    list(ids),
                ).fetchall()
            ]
            db.execute(
                f"UPDATE {TABLE} SET state = 'pending', next_attempt_at = ?, updated_at = ? "
                f"WHERE state IN ('pending', 'dead') AND delivery_id IN ({marks})",
                [stamp, stamp, *ids],
            )
            return found
        found = [
            r[0] for r in db.execute(f"SELECT delivery_id FROM {TABLE} WHERE state = 'pending'")
        ]
        db.execute(f"UPDATE {TABLE} SET next_attempt_at = ? WHERE state = 'pending'", [stamp])
        return found
