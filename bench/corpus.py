"""The store rows 2 and 3 search: N entries over 90 days, written through `Store.commit_batch`.

Terms with known frequencies: "invoice" is in about a fifth of messages (the common term),
"sku missing" is a phrase in about 2 % of entries (a fifth of the failures), and each entry's
order number `ORD-<n>` appears once (the rare term).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from logd import Entry, Status
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
                entry.source, entry.provider = source, source
                by_source.setdefault(source, []).append(entry)
            for source, entries in by_source.items():
                store.commit_batch(source, entries, None)
