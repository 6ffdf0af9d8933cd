"""Retention: entries older than `retention` are deleted, and the file gives the space back.

Entries are keyed by time, so "older than" is a range at the bottom of the primary key: each
chunk is a short transaction (polls commit between chunks) that also takes the chunk out of the
FTS5 index (`unindex_text`: the index holds folded text, which no trigger computes). The store
is created with `auto_vacuum = INCREMENTAL`, so the freed pages can be handed back to the file
system with `PRAGMA incremental_vacuum`, also in small steps.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from logd.store.interface import RetentionResult
from logd.store.sqlite.search import time_key

if TYPE_CHECKING:
    from logd.store.sqlite.store import Store

CHUNK = 5_000  # entries per delete transaction: short enough that a poll never waits long
VACUUM_PAGES = 2_000  # pages returned per incremental_vacuum step


def apply_retention(
    store: Store,
    older_than: float,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    chunk: int = CHUNK,
) -> RetentionResult:
    """Delete entries, poll runs, status changes and delivered alerts older than `older_than`
    seconds (`Store.apply_retention`; `chunk` entries per transaction)."""
    from logd.store.sqlite.store import unindex_text

    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than)
    result = RetentionResult(cutoff)
    key = time_key(cutoff)
    while stop is None or not stop.is_set():
        with store.transaction() as db:
            (found,) = db.execute(
                "SELECT json_group_array(id) FROM "
                "(SELECT id FROM entries WHERE id < ? ORDER BY id LIMIT ?)",
                [key, chunk],
            ).fetchone()
            keys = orjson.loads(found)
            unindex_text(db, keys)  # with the values it indexed: see Store's FTS upkeep
            deleted = db.execute(
                "DELETE FROM entries WHERE id IN (SELECT value FROM json_each(?))", [found]
            ).rowcount
        result.entries += deleted
        if deleted < chunk:
            break
    stamp = cutoff.isoformat(timespec="microseconds")
    with store.transaction() as db:
        # Keep each source's latest successful and latest failed run: `status` reads them.
        result.poll_runs = db.execute(
            "DELETE FROM poll_runs WHERE started < ? AND id NOT IN "
            "(SELECT max(id) FROM poll_runs GROUP BY source, error IS NULL)",
            [stamp],
        ).rowcount
        result.status_changes = db.execute(
            "DELETE FROM status_changes WHERE at < ?", [stamp]
        ).rowcount
        # Delivered alerts are history; pending and dead ones stay until dealt with.
        result.deliveries = db.execute(
            "DELETE FROM webhook_outbox WHERE state = 'done' AND updated_at < ?", [stamp]
        ).rowcount
    result.pages_freed = reclaim(store, stop=stop)
    return result


def free_pages(store: Store) -> int:
    """Pages on the file's free list (what an incremental vacuum would give back)."""
    with store.reading() as db:
        return int(db.execute("PRAGMA freelist_count").fetchone()[0])


def reclaim(store: Store, *, stop: threading.Event | None = None) -> int:
    """Give free pages back to the file system, a step at a time; return how many."""
    freed = 0
    while stop is None or not stop.is_set():
        before = free_pages(store)
        if before == 0:
            break
        with store.reading() as db:
            # Each step frees pages one statement step at a time: fetch it to the end.
            db.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
            db.conn.commit()
        after = free_pages(store)
        if after >= before:  # auto_vacuum is off in this file: nothing to give back
            break
        freed += before - after
    return freed
