"""Row 10: the PostgreSQL store, next to the SQLite store on the same machine and data.

- `logd migrate-store`'s copy of the corpus store into PostgreSQL (entries/s);
- a backfill through `commit_batch`, into PostgreSQL and into SQLite (entries/s);
- `logd query TEXT --limit 50` p50 on the copied corpus, next to the SQLite store's;
- failover: two processes polling one source through its lease, the holder killed with
  SIGKILL; the time until the other stores its next batch (lease expiry 1 s).

The server is a throwaway cluster on a Unix socket (`logd.store.postgres.cluster`), tuned as
for tests (fsync off): figures compare the stores' work, not the disks'.

    python bench/row10_postgres.py [--quick] DB    # DB: a corpus store (bench/corpus.py)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from common import Figure, timed_ms

from logd import Entry, Status
from logd.store.interface import Filters
from logd.store.postgres.cluster import Cluster, temporary_cluster
from logd.store.postgres.copy import copy_sqlite
from logd.store.postgres.store import PostgresStore
from logd.store.sqlite.export import SqliteExport
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.store import Store

ROW = "10 postgres"
BATCH = 500
WORDS = [
    "invoice",
    "stock",
    "sync",
    "vehicle",
    "order",
    "timeout",
    "failed",
    "upstream",
    "customer",
    "payment",
]
#: Row 2's terms.
TERMS = {
    "common term (invoice)": ("invoice", False),
    "rare term (ORD-<n>)": (None, False),
    'phrase ("sku missing")': ('"sku missing"', True),
}


def run(quick: bool, db: Path) -> list[Figure]:
    """Copy, backfill, query and failover figures of the PostgreSQL store."""
    figures: list[Figure] = []
    with temporary_cluster() as cluster:
        figures.append(_copy(cluster, db))
        figures.append(_backfill(cluster, 5_000 if quick else 100_000))
        figures += _queries(cluster, db, 30 if quick else 50)
        figures.append(_failover(cluster))
    return figures


def _database(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.url(name)


def _copy(cluster: Cluster, db: Path) -> Figure:
    source = SqliteExport(db)
    with PostgresStore(_database(cluster, "corpus")) as store:
        started = time.perf_counter()
        result = copy_sqlite(source, store)
        seconds = time.perf_counter() - started
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE entries")
    source.close()
    n = result.totals["entries"]
    return Figure(ROW, f"migrate-store copy, {n:,} entries", n / seconds, "entries/s",
                  note=f"{seconds:.0f} s, counts verified")  # fmt: skip


def _entries(n: int) -> list[list[Entry]]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batches = []
    for start in range(0, n, BATCH):
        batch = []
        for k in range(start, min(start + BATCH, n)):
            e = Entry(
                native_id=str(k),
                timestamp=base + timedelta(seconds=k),
                status=Status.FAILURE if k % 7 == 0 else Status.SUCCESS,
                message=" ".join(WORDS[(k * j) % len(WORDS)] for j in range(1, 6)),
                error="Timeout after 30 s" if k % 7 == 0 else None,
                raw={"order": f"ORD-{k}", "sku": f"SKU{k % 100}"},
            )
            batch.append(e)
        batches.append(batch)
    return batches


def _backfill(cluster: Cluster, n: int) -> Figure:
    batches = _entries(n)
    with PostgresStore(_database(cluster, "backfill")) as pg:
        started = time.perf_counter()
        for batch in batches:
            pg.commit_batch(
                "fleet",
                batch,
                None,
                prepared=[pg.prepare(e, "fleetit") for e in batch],
                provider="fleetit",
            )
        postgres = n / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "logd.db") as lite:
        started = time.perf_counter()
        for batch in batches:
            lite.commit_batch("fleet", batch, None, provider="fleetit")
        sqlite = n / (time.perf_counter() - started)
    return Figure(ROW, f"backfill, {n:,} entries in batches of {BATCH}", postgres, "entries/s",
                  "SQLite store, same batches", sqlite,
                  note=f"{postgres / sqlite:.0%} of SQLite")  # fmt: skip


def _queries(cluster: Cluster, db: Path, runs: int) -> list[Figure]:
    figures = []
    reader = Reader(db)
    with PostgresStore(cluster.url("corpus")) as pg:
        total = pg.count()
        for label, (text, fts) in TERMS.items():
            f = Filters(text=text or f'"ORD-{total // 2}"', fts=fts)
            p50, p95 = timed_ms(lambda f=f: pg.search(f, limit=50), runs)
            floor, _ = timed_ms(lambda f=f: reader.search(f, limit=50), runs)
            figures.append(Figure(ROW, f"query {label}, {total:,} entries", p50, "ms p50",
                                  "SQLite store, same query", floor,
                                  note=f"p95 {p95:.1f} ms"))  # fmt: skip
    reader.close()
    return figures


WORKER = """
import sys, time
from datetime import UTC, datetime, timedelta
from logd import Entry, Status
from logd.store.interface import LeaseLost
from logd.store.postgres.store import PostgresStore
url, holder = sys.argv[1], sys.argv[2]
store = PostgresStore(url)
base = datetime(2026, 1, 1, tzinfo=UTC)
while True:
    lease = store.claim_lease("source:fleet", holder, 1.0)
    if lease is None:
        time.sleep(0.05)
        continue
    cursor = store.cursor("fleet") or 0
    batch = []
    for i in range(cursor, cursor + 50):
        e = Entry(native_id=str(i), timestamp=base + timedelta(seconds=i),
                  status=Status.SUCCESS, message=f"m{i}")
        batch.append(e)
    try:
        store.commit_batch("fleet", batch, cursor + 50, lease=lease, provider="fleetit")
    except LeaseLost:
        continue
    time.sleep(0.01)
"""


def _failover(cluster: Cluster) -> Figure:
    url = _database(cluster, "failover")
    with tempfile.TemporaryDirectory() as tmp, PostgresStore(url) as store:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        a = subprocess.Popen([sys.executable, str(script), url, "a"])
        b = subprocess.Popen([sys.executable, str(script), url, "b"])
        try:
            deadline = time.monotonic() + 60
            while (store.cursor("fleet") or 0) < 500 and time.monotonic() < deadline:
                time.sleep(0.02)
            holder = next(x.holder for x in store.leases())
            victim = a if holder == "a" else b
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait()
            at = store.cursor("fleet") or 0
            while (store.cursor("fleet") or 0) <= at and time.monotonic() < killed + 60:
                time.sleep(0.01)
            took = time.monotonic() - killed
        finally:
            a.kill()
            b.kill()
    note = "lease expiry 1 s; until the other instance stored its next batch"
    return Figure(ROW, "failover after SIGKILL of the lease holder", took, "s", note=note)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for figure in run(quick, Path(sys.argv[-1])):
        base = f" (baseline {figure.baseline_value:.1f})" if figure.baseline_value else ""
        print(f"{figure.name}: {figure.value:.1f} {figure.unit}{base} {figure.note}")
