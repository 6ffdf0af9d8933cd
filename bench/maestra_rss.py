"""Peak memory of one Maestra export sync: `python bench/maestra_rss.py ROWS`.

The simulator runs in a child process so the figure is logd's alone. Flat peak RSS between
20k and 200k rows is the evidence that parts are streamed, not held whole.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it does not carry over exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve(rows: int, conn: Connection) -> None:
    from logd_maestra import MaestraSimulator

    now = datetime.now(UTC)
    with MaestraSimulator(records=0, part_rows=50_000) as sim:
        sim.add_bulk(rows, now - timedelta(hours=20), now - timedelta(hours=1))
        conn.send(sim.demo_source("maestra"))
        conn.recv()  # until the parent is done


def measure(rows: int) -> dict[str, Any]:
    from logd.testing import SyncRun

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(rows, child), daemon=True)
    server.start()
    source = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        run = SyncRun(Path(tmp), [{**source, "backfill": "1d", "export_poll": "0.2s"}])
        run.engine.sleep = time.sleep  # real waits: the export is prepared in real time
        started = time.perf_counter()
        report = run.sync()["maestra"]
        took = time.perf_counter() - started
        stored = run.count()
        run.close()
    parent.send("done")
    server.join(5)
    peak_kb = peak_rss_kb()
    return {
        "rows": rows,
        "stored": stored,
        "error": report.error,
        "seconds": round(took, 1),
        "rows_per_s": round(stored / took),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
