"""Row 9, first sync: a Maestra source's first poll (a 7-day backfill) with the defaults.

A Maestra export is asynchronous: start it, check its status until Ready, then download its
parts. The provider keeps two exports in flight (the API's limit per project), checks each at
once and then after 1 s, 2 s, 4 s … up to `export_poll`, in 2-day windows. The simulator
answers Ready after two checks, as a quick vendor would; the sync runs through the real
engine with real sleeps. The baseline, in the same run, is the same backfill in 1-day windows
against a project that allows one export at a time: how the first sync went before.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from common import Figure
from logd_maestra import MaestraSimulator

from logd.plugin.testing import SyncRun

ROW = "9 first sync"


def first_sync(records: int, *, max_running: int, **keys: Any) -> float:
    """Seconds of one first sync of a Maestra source over `records` rows."""
    with (
        MaestraSimulator(records=records, max_running=max_running) as sim,
        tempfile.TemporaryDirectory(prefix="logd-bench-first-") as tmp,
    ):
        # The demo's table shortens the backfill and the waits; this row runs the defaults.
        table = {
            k: v
            for k, v in sim.demo_source("maestra").items()
            if k not in ("backfill", "window", "lag", "export_poll")
        }
        run = SyncRun(Path(tmp), [{**table, **keys}])
        run.engine.sleep = time.sleep  # the vendor's pace is what this row measures
        started = time.perf_counter()
        report = run.sync()["maestra"]
        took = time.perf_counter() - started
        stored = run.count()
        run.close()
    if not report.ok:
        raise RuntimeError(report.error)
    if stored == 0:
        raise RuntimeError("the first sync stored nothing")
    return took


def run(quick: bool) -> list[Figure]:
    """Time a default first sync beside the one-export, 1-day-window baseline (not in quick)."""
    records = 300 if quick else 3_000
    took = first_sync(records, max_running=2)
    # The baseline waits on the vendor three times as long; quick mode only checks the row runs.
    before = None if quick else first_sync(records, max_running=1, window="1d")
    return [
        Figure(
            ROW,
            f"Maestra first sync (7-day backfill, {records:,} rows), defaults",
            took,
            "s",
            baseline="1-day windows, one export at a time",
            baseline_value=before,
            target="≤ 30 s",
            ok=took <= 30,
            note="baseline skipped in quick mode" if before is None else "",
        )
    ]
