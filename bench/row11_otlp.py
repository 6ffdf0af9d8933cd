"""Row 11: OTLP export, records/s from a store to a collector on 127.0.0.1.

The export reads the store's change sequence in batches of 512, encodes each batch as an
OTLP `ExportLogsServiceRequest` (protobuf, then OTLP/JSON) and posts it; the collector is
logd's test receiver in a process of its own, decoding every request with
`opentelemetry-proto`, as a real collector's receiver would. Timed from the first read to
the last answer; the figure is records the collector took per second.

    python bench/row11_otlp.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Figure

from logd import Entry, Status
from logd.config.settings import OtlpExportConfig
from logd.delivery.sinks.otlp import OtlpExporter, export_changes
from logd.store.sqlite.store import Store

ROW = "11 otlp"
BATCH = 500
RECEIVER = """
import sys, threading
from logd.delivery.sinks.otlp_receiver import OtlpReceiver
rx = OtlpReceiver().start()
print(rx.endpoint, flush=True)
sys.stdin.read()
print(sum(len(r.records()) for r in rx.received), flush=True)
"""


def _store(path: Path, n: int) -> Store:
    store = Store(path)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, n, BATCH):
        batch = []
        for k in range(start, min(start + BATCH, n)):
            e = Entry(
                native_id=str(k),
                timestamp=base + timedelta(seconds=k),
                status=Status.FAILURE if k % 7 == 0 else Status.SUCCESS,
                message=f"order ORD-{k} synced to the ERP",
                error="Timeout after 30 s" if k % 7 == 0 else None,
                entity_type="order",
                entity_id=f"ORD-{k}",
                raw={"id": k, "order": f"ORD-{k}", "lines": [{"sku": f"SKU{k % 100}", "qty": 2}]},
            )
            batch.append(e)
        store.commit_batch("fleet", batch, None, provider="fleetit")
    return store


def _export(store: Store, fmt: str, n: int) -> Figure:
    """Export the first `n` changes of `store` in `fmt`."""
    with subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as rx:
        assert rx.stdin is not None and rx.stdout is not None
        endpoint = rx.stdout.readline().strip()
        config = OtlpExportConfig(kind="otlp", name=f"bench-{fmt}", endpoint=endpoint, format=fmt)
        exporter = OtlpExporter(config)
        started = time.perf_counter()
        done = export_changes(
            store,
            config.name,
            exporter.send,
            batch_size=config.batch_size,
            max_batches=-(-n // config.batch_size),
        )
        took = time.perf_counter() - started
        exporter.close()
        rx.stdin.close()
        received = int(rx.stdout.readline())
    ok = done.exported == received >= n
    return Figure(ROW, f"export of {n:,} entries to a local collector ({fmt})",
                  done.exported / took, "records/s", target="every record received",
                  ok=ok, note=f"{received:,} decoded by the collector in {took:.1f} s; "
                  f"batches of {config.batch_size}")  # fmt: skip


def run(quick: bool) -> list[Figure]:
    """Both encodings over one store (OTLP/JSON on fewer: the collector decodes it slowly)."""
    n = 5_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="logd-otlp-") as tmp:
        store = _store(Path(tmp) / "logd.db", n)
        try:
            return [_export(store, "protobuf", n), _export(store, "json", n // 5)]
        finally:
            store.close()


if __name__ == "__main__":
    for figure in run("--quick" in sys.argv):
        print(f"{figure.name}: {figure.value:.1f} {figure.unit} {figure.note}")
