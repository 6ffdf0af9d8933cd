"""`make bench`: the figures logd is held to, measured on this machine.

- ingest: entries/s through `Store.commit_batch` (FTS triggers included), and the cost of an
  idle re-sync (the same batches again: nothing written);
- query: newest-first latency over BENCH_ENTRIES entries (default 1,000,000) for the shapes
  `logd query` runs, median and p95 of repeated runs;
- sync: one FleetIT backfill through the real engine, HTTP included, against its simulator.

Figures print as a table and are saved to bench/results/latest.json.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logd import Entry, Status
from logd.store import Filters, Store

N = int(os.environ.get("BENCH_ENTRIES", "1000000"))
BATCH = 1000
WORDS = [
    "order",
    "stock",
    "price",
    "invoice",
    "shipment",
    "customer",
    "vehicle",
    "ticket",
    "parking",
    "webhook",
    "sync",
    "update",
    "create",
    "delete",
    "fetch",
    "import",
    "export",
]
ERRORS = [
    "Timeout while contacting upstream after 30s",
    "Connection refused",
    "HTTP 502 Bad Gateway",
    "Validation failed: sku missing",
    "Rate limited by vendor",
]
SOURCES = ["fleet", "pegasus", "shop", "maestra", "akinon"]


def make_entries(n: int, rng: random.Random, now: datetime) -> list[list[Entry]]:
    batches: list[list[Entry]] = []
    span = timedelta(days=90).total_seconds()
    for start in range(0, n, BATCH):
        batch = []
        for i in range(start, min(n, start + BATCH)):
            roll = rng.random()
            status = (
                Status.FAILURE if roll < 0.1 else Status.PENDING if roll < 0.13 else Status.SUCCESS
            )
            error = rng.choice(ERRORS) if status is Status.FAILURE else None
            message = " ".join(rng.choices(WORDS, k=4))
            e = Entry(
                native_id=str(i),
                timestamp=now - timedelta(seconds=rng.random() * span),
                status=status,
                message=message,
                error=error,
                entity_type="order",
                entity_id=str(rng.randint(1, 10**6)),
                raw={
                    "id": i,
                    "path": f"/api/{rng.choice(WORDS)}/{i}",
                    "error": error,
                    "body": {"note": message},
                },
            )
            e.source = SOURCES[i % len(SOURCES)]
            e.provider = e.source
            batch.append(e)
        batches.append(batch)
    return batches


def timed(fn: Callable[[], Any], runs: int = 30) -> dict[str, float]:
    fn()  # warm the page cache
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
    }


def bench_store(directory: Path) -> dict[str, Any]:
    rng = random.Random(1)
    now = datetime.now(UTC)
    batches = make_entries(N, rng, now)
    store = Store(directory / "bench.db")
    t = time.perf_counter()
    for batch in batches:
        by_source: dict[str, list[Entry]] = {}
        for e in batch:
            by_source.setdefault(e.source, []).append(e)
        for source, entries in by_source.items():
            store.commit_batch(source, entries, {"n": 1})
    ingest = time.perf_counter() - t
    t = time.perf_counter()
    for batch in batches[:100]:
        by_source = {}
        for e in batch:
            by_source.setdefault(e.source, []).append(e)
        for source, entries in by_source.items():
            store.commit_batch(source, entries, None)
    resync = time.perf_counter() - t
    resynced = sum(len(b) for b in batches[:100])

    two_hours = now - timedelta(hours=2)
    shapes: dict[str, Filters] = {
        "newest 50": Filters(),
        "--failed": Filters(statuses=("failure",)),
        "--source shop": Filters(sources=("shop",)),
        "--since 2h": Filters(since=two_hours),
        '"timeout" (10% of entries)': Filters(text="timeout"),
        '"timeout" --failed --since 2h': Filters(
            text="timeout", statuses=("failure",), since=two_hours
        ),
        '"invoice" (common word)': Filters(text="invoice"),
        '"sku missing" (phrase words)': Filters(text="sku missing"),
        'fts "refused OR 502"': Filters(text="refused OR 502", fts=True),
        "rare id (1 match)": Filters(text=str(N // 2)),
    }
    queries = {name: timed(lambda f=f: store.search(f, limit=50)) for name, f in shapes.items()}
    size = os.path.getsize(store.path)
    store.close()
    return {
        "entries": N,
        "ingest_entries_per_s": N / ingest,
        "ingest_seconds": ingest,
        "idle_resync_entries_per_s": resynced / resync,
        "db_bytes": size,
        "queries": queries,
    }


def bench_sync(directory: Path) -> dict[str, Any]:
    from logd_fleetit import FleetITSimulator

    from logd.testing import SyncRun

    with FleetITSimulator(records=5000) as sim:
        run = SyncRun(directory / "sync", [sim.demo_source("fleet")])
        t = time.perf_counter()
        report = run.sync()["fleet"]
        took = time.perf_counter() - t
        t = time.perf_counter()
        idle = run.sync()["fleet"]
        idle_took = time.perf_counter() - t
    return {
        "fleetit_backfill_records": report.new,
        "fleetit_backfill_seconds": took,
        "fleetit_records_per_s": report.new / took,
        "fleetit_resync_seconds": idle_took,
        "fleetit_resync_requests": idle.requests,
    }


def main() -> None:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        print(f"store: writing {N:,} entries…", flush=True)
        results["store"] = bench_store(Path(tmp))
        results["sync"] = bench_sync(Path(tmp))
    extra = Path(__file__).with_name("plugins.py")
    if extra.exists():
        import runpy

        results["plugins"] = runpy.run_path(str(extra))["run"]()

    s = results["store"]
    print(f"\nstore of {s['entries']:,} entries, {s['db_bytes'] / 1e6:,.0f} MB")
    print(f"  ingest         {s['ingest_entries_per_s']:>10,.0f} entries/s")
    print(f"  idle re-sync   {s['idle_resync_entries_per_s']:>10,.0f} entries/s (nothing written)")
    print(f"  {'query (limit 50, newest first)':<40} {'median':>9} {'p95':>9}")
    for name, q in s["queries"].items():
        print(f"  {name:<40} {q['median_ms']:>7.2f}ms {q['p95_ms']:>7.2f}ms")
    for key, value in {**results["sync"], **results.get("plugins", {})}.items():
        print(
            f"  {key:<40} {value:>12,.2f}"
            if isinstance(value, float)
            else f"  {key:<40} {value:>12}"
        )
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
