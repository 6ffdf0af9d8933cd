"""The outbox table: deliveries queued for sinks, claimed by a sender, their attempts.

Rows are queued inside the batch transaction that stored what they report, so a crash can
delay a delivery but never lose it. A sender claims due rows (`claim_due`) for a while before
sending them, so two senders (threads, or processes sharing a store) never send the same row;
recording an attempt ends its claim. The `Store` methods of the same names call these inside
its transactions; only SQL lives here (no HTTP, no signing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from logd.store.interface import Attempt, Delivery, NewDelivery

if TYPE_CHECKING:  # annotations only: `logd status` reads the outbox without sqlite_utils
    import sqlite_utils

TABLE = "webhook_outbox"  # the name it was created under (m002); it holds every sink's rows
STATES = ("pending", "dead", "done")
COLUMNS = (
    "delivery_id, sink, source, provider, count, body, state, attempts, next_attempt_at, "
    "last_status, last_error, created_at, updated_at"
)
#: Ids bound per statement (SQLite before 3.32 allowed 999 variables).
CHUNK = 500


def iso(when: datetime) -> str:
    """The stored form of a time: UTC ISO 8601 with microseconds, so strings sort as times."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def from_sql(row: Sequence[Any]) -> Delivery:
    """A `Delivery` from a `SELECT {COLUMNS}` row."""
    values = list(row)
    values[5] = bytes(values[5]) if not isinstance(values[5], str) else values[5].encode()
    return Delivery(*values)


def has_outbox(db: sqlite_utils.Database) -> bool:
    """True when the store has the outbox table (a store opened read-only may predate it)."""
    return bool(db[TABLE].exists())


def _has_sink_column(db: sqlite_utils.Database) -> bool:
    """Whether the outbox has m010's columns (a store read without migrating may not)."""
    return any(row[1] == "sink" for row in db.execute(f"PRAGMA table_info({TABLE})"))


def _columns(db: sqlite_utils.Database) -> tuple[str, str]:
    """(the row columns, the sink column) of this store's outbox, before or after m010."""
    if _has_sink_column(db):
        return COLUMNS, "sink"
    return COLUMNS.replace("sink", "webhook"), "webhook"


def enqueue(db: sqlite_utils.Database, delivery: NewDelivery, now: datetime) -> None:
    """Queue one delivery, due at `now` (inside the caller's transaction)."""
    stamp = iso(now)
    db.execute(
        f"INSERT INTO {TABLE} (delivery_id, sink, source, provider, count, body, state, "
        "attempts, next_attempt_at, created_at, updated_at) "
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


def counts(db: sqlite_utils.Database, by: str) -> dict[str, dict[str, int]]:
    """Per source or sink (`by`): pending, dead and done delivery counts."""
    if not has_outbox(db):
        return {}
    _, sink = _columns(db)
    column = {"source": "source", "sink": sink}[by]
    out: dict[str, dict[str, int]] = {}
    rows = db.execute(
        f"SELECT {column}, state, count(*) FROM {TABLE} GROUP BY {column}, state"
    ).fetchall()
    for key, state, n in rows:
        out.setdefault(key, dict.fromkeys(STATES, 0))[state] = n
    return out


def list_deliveries(
    db: sqlite_utils.Database,
    *,
    state: str | None = None,
    ids: Sequence[str] = (),
    limit: int | None = None,
) -> list[Delivery]:
    """Outbox rows, newest first, optionally only one state or the given delivery ids."""
    if not has_outbox(db):
        return []
    columns, _ = _columns(db)
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if ids:
        where.append(f"delivery_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    sql = f"SELECT {columns} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [from_sql(r) for r in db.execute(sql, params).fetchall()]


def _due_where(
    now: datetime,
    ids: Sequence[str],
    sink: str | None,
    holder: str | None = None,
    dead: Sequence[int] = (),
) -> tuple[str, list[Any]]:
    """FROM … WHERE for the pending rows due at `now` (of `sink`, among `ids`): a sink's lane
    is first in, first out, so without `ids` rows queued after one waiting for a retry wait
    behind it; rows another holder's claim still covers are left out."""
    stamp = iso(now)
    sql = f"FROM {TABLE} WHERE state = 'pending' AND next_attempt_at <= ?"
    params: list[Any] = [stamp]
    if sink is not None:
        sql += " AND sink = ?"
        params.append(sink)
        if not ids:
            sql += (
                f" AND id < coalesce((SELECT min(id) FROM {TABLE} WHERE state = 'pending' "
                "AND sink = ? AND next_attempt_at > ?), 9e18)"
            )
            params += [sink, stamp]
    if holder is not None:
        gone = f" OR claimed_pid IN ({','.join('?' * len(dead))})" if dead else ""
        sql += f" AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?{gone})"
        params += [holder, stamp, *dead]
    if ids:
        sql += f" AND delivery_id IN ({','.join('?' * len(ids))})"
        params.extend(ids)
    return sql, params


def due_rows(
    db: sqlite_utils.Database,
    sink: str,
    holder: str,
    now: datetime,
    *,
    ids: Sequence[str] = (),
    limit: int = 100,
) -> list[Delivery]:
    """The rows of `sink` that `holder` may claim at `now`, oldest first (see
    `Store.claim_due`): a read, so it never waits for a writer."""
    if not has_outbox(db) or not _has_sink_column(db):
        return []
    stamp = iso(now)
    # Processes holding live claims of other holders on this sink; a gone one's are void.
    pids = {
        r[0]
        for r in db.execute(
            f"SELECT DISTINCT claimed_pid FROM {TABLE} WHERE sink = ? AND state = 'pending' "
            "AND claimed_by IS NOT NULL AND claimed_by != ? AND claimed_until > ?",
            [sink, holder, stamp],
        )
    }
    dead = sorted(p for p in pids if p is not None and not process_alive(p))
    if not ids and len(dead) < len(pids):
        # One lane, one sender: while another holder's claim on this sink runs, the rows
        # behind it wait too (sending them now would overtake the claimed ones).
        return []
    sql, params = _due_where(now, ids, sink, holder, dead)
    rows = db.execute(f"SELECT {COLUMNS} {sql} ORDER BY id LIMIT ?", [*params, int(limit)])
    return [from_sql(r) for r in rows.fetchall()]


def mark_claimed(
    db: sqlite_utils.Database, delivery_ids: Sequence[str], holder: str, until: datetime
) -> None:
    """Record that `holder`, in this process, claims these deliveries until `until` (for
    other processes)."""
    for start in range(0, len(delivery_ids), CHUNK):
        chunk = delivery_ids[start : start + CHUNK]
        db.execute(
            f"UPDATE {TABLE} SET claimed_by = ?, claimed_until = ?, claimed_pid = ? "
            f"WHERE state = 'pending' AND delivery_id IN ({','.join('?' * len(chunk))})",
            [holder, iso(until), os.getpid(), *chunk],
        )


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (on this host: every user of the file is here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def due_sinks(db: sqlite_utils.Database, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
    """The sinks with a pending delivery due (among `ids` when given); no bodies read."""
    if not has_outbox(db):
        return []
    _, sink = _columns(db)
    sql, params = _due_where(now, ids, None)
    rows = db.execute(f"SELECT DISTINCT {sink} {sql}", params).fetchall()
    return sorted(r[0] for r in rows)


def next_due_at(db: sqlite_utils.Database, sinks: Sequence[str]) -> datetime | None:
    """When the next delivery to one of `sinks` is due (its lane's oldest pending row's next
    attempt: the lane is first in, first out), or None when nothing is pending."""
    if not sinks or not has_outbox(db):
        return None
    _, sink = _columns(db)
    value = db.execute(
        f"SELECT min(next_attempt_at) FROM {TABLE} WHERE id IN (SELECT min(id) FROM {TABLE} "
        f"WHERE state = 'pending' AND {sink} IN ({','.join('?' * len(sinks))}) "
        f"GROUP BY {sink})",
        list(sinks),
    ).fetchone()[0]
    return datetime.fromisoformat(value) if value else None


def record_attempts(
    db: sqlite_utils.Database,
    attempts: Sequence[Attempt],
    *,
    hold: Sequence[str] = (),
    until: datetime | None = None,
) -> None:
    """Record attempts (ending their claims), and hold the pending deliveries `hold` until
    `until` (ending theirs too): inside the caller's transaction."""
    for a in attempts:
        db.execute(
            f"UPDATE {TABLE} SET state = ?, attempts = attempts + 1, last_status = ?, "
            "last_error = ?, next_attempt_at = ?, updated_at = ?, claimed_by = NULL, "
            "claimed_until = NULL WHERE delivery_id = ?",
            [a.state, a.status, a.error, iso(a.next_attempt_at), iso(a.at), a.delivery_id],
        )
    if hold and until is not None:
        for start in range(0, len(hold), CHUNK):
            chunk = hold[start : start + CHUNK]
            db.execute(
                f"UPDATE {TABLE} SET next_attempt_at = max(next_attempt_at, ?), "
                "claimed_by = NULL, claimed_until = NULL "
                f"WHERE state = 'pending' AND delivery_id IN ({','.join('?' * len(chunk))})",
                [iso(until), *chunk],
            )


def make_due(db: sqlite_utils.Database, ids: Sequence[str], now: datetime) -> list[str]:
    """Make deliveries due now: the named ones (dead included), else every pending one.

    Returns the ids made due; named ids that are unknown or already done are left out.
    """
    if not has_outbox(db):
        return []
    stamp = iso(now)
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
    found = [r[0] for r in db.execute(f"SELECT delivery_id FROM {TABLE} WHERE state = 'pending'")]
    db.execute(f"UPDATE {TABLE} SET next_attempt_at = ? WHERE state = 'pending'", [stamp])
    return found


def sink_position(db: sqlite_utils.Database, sink: str) -> int:
    """How far along the change sequence `sink` got (0 before its first send)."""
    if not db["sink_positions"].exists():
        return 0
    row = db.execute("SELECT seq FROM sink_positions WHERE sink = ?", [sink]).fetchone()
    return int(row[0]) if row else 0


def set_sink_position(db: sqlite_utils.Database, sink: str, seq: int, now: datetime) -> None:
    """Record that `sink` has everything up to change `seq`; a smaller `seq` changes nothing."""
    db.execute(
        "INSERT INTO sink_positions (sink, seq, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq), "
        "updated_at = excluded.updated_at",
        [sink, seq, iso(now)],
    )
