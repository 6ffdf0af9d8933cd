"""The store rows 2 and 3 search: N entries over 90 days, written through `Store.commit_batch`.

Terms with known frequencies: "invoice" is in about a fifth of messages (the common term),
"sku missing" is a phrase in about 2 % of entries (a fifth of the failures), and each entry's
order number `ORD-<n>` appears once (the rare term).

`cached` keeps full-size corpora under `bench/.corpora/` (5M entries take about half an hour
to write on the 2-core machine), keyed by their size and a hash of what they depend on: this
file and the store's migrations. One younger than `MAX_AGE` is used again; entries' times are
relative to when it was written, so an older one no longer has a last day to search.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import HERE

from logd import Entry, Status
from logd.store.sqlite.migrations import MIGRATIONS
from logd.store.sqlite.store import Store

BATCH = 5_000
WORDS = [
    "order", "stock", "price", "invoice", "shipment", "customer", "vehicle", "ticket",
    "parking", "webhook", "sync", "update", "create", "delete", "fetch", "import", "export",
]  # fmt: skip
ERRORS = [
    "Timeout while contacting upstream after 30s",
    "Connection refused",
    "HTTP 502 Bad Gateway",
    "Validation failed: sku missing",
    "Rate limited by vendor",
]
SOURCES = ["fleet", "pegasus", "shop", "maestra", "akinon"]


def build(path: Path, n: int) -> None:
    """Write the corpus of `n` entries to a new store at `path`."""
    rng = random.Random(1)
    now = datetime.now(UTC)
    span = 90 * 86_400
    with Store(path) as store:
        for start in range(0, n, BATCH):
            by_source: dict[str, list[Entry]] = {}
            for i in range(start, min(n, start + BATCH)):
                roll = rng.random()
                status = (
                    Status.FAILURE
                    if roll < 0.1
                    else Status.PENDING
                    if roll < 0.13
                    else Status.SUCCESS
                )
                error = rng.choice(ERRORS) if status is Status.FAILURE else None
                message = " ".join(rng.choices(WORDS, k=4))
                source = SOURCES[i % len(SOURCES)]
                entry = Entry(
                    native_id=str(i),
                    # Oldest first, a minute of jitter: logs arrive roughly in time order.
                    timestamp=now - timedelta(seconds=span * (n - i) / n + rng.random() * 60),
                    status=status,
                    message=message,
                    error=error,
                    entity_type="order",
                    entity_id=f"ORD-{i}",
                    raw={"id": i, "order": f"ORD-{i}", "path": f"/api/{rng.choice(WORDS)}"},
                )
                by_source.setdefault(source, []).append(entry)
            for source, entries in by_source.items():
                store.commit_batch(source, entries, None, provider=source)


CACHE = HERE / ".corpora"
MAX_AGE = timedelta(hours=12)


def version() -> str:
    """What a written corpus depends on: this file and the store's schema, hashed.

    The schema is the list of migrations: what the store writes (columns, index layout)
    changes only with a migration, which existing stores need as much as this cache.
    """
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(" ".join(fn.__name__ for fn in MIGRATIONS).encode())
    return digest.hexdigest()[:16]


def cached(n: int, cache: Path = CACHE) -> Path:
    """The corpus of `n` entries in `cache`: the one written by the same code in the last
    `MAX_AGE`, else a new one written there (replacing older corpora of that size)."""
    path = cache / f"corpus-{n}-{version()}.db"
    if path.exists() and time.time() - path.stat().st_mtime < MAX_AGE.total_seconds():
        return path
    cache.mkdir(exist_ok=True)
    building = cache / f"corpus-{n}.building"
    for stale in [building, *cache.glob(f"corpus-{n}-*.db")]:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{stale}{suffix}").unlink(missing_ok=True)
    build(building, n)
    conn = sqlite3.connect(building)  # one file to rename: the WAL written into it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.replace(building, path)
    return path
