"""Row 4: memory. Peak RSS of a whole `logd sync` process over a large backfill.

- FleetIT, 1,000,000 records (quick: 20,000): JSON pages through the engine and the store;
- Maestra, a 200,000-row export (quick: 20,000): gzip/CSV parts streamed from a second origin.

The simulators run in processes of their own, so the figure is logd's alone: wait4's
ru_maxrss of the `logd sync` child. Store bytes per entry come from the file it leaves.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Figure, count_entries
from logd_fleetit import FleetITSimulator
from logd_maestra import MaestraSimulator
from procs import logd
from serve import served

from logd.plugin.testing import write_config

ROW = "4 memory"
LIMIT_MB = 150.0


def maestra_export(rows: int) -> MaestraSimulator:
    """A Maestra simulator whose next export holds `rows` calls of the last day (parts of 50k)."""
    now = datetime.now(UTC)
    sim = MaestraSimulator(records=0, part_rows=50_000)
    sim.add_bulk(rows, now - timedelta(hours=20), now - timedelta(hours=1))
    return sim


def sync(source: dict[str, Any], directory: Path, expect: int, label: str) -> list[Figure]:
    """Peak RSS of `logd sync` of `source` into a fresh store, and the store's bytes/entry."""
    config = write_config(directory, [source])
    ran = logd("sync", "--quiet", "-c", str(config))
    db = directory / "logd.db"
    with sqlite3.connect(db) as conn:  # the WAL folded in, so the file size is the store's
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = count_entries(db)
    size = os.path.getsize(db)
    note = f"{stored:,} stored in {ran.seconds:.1f} s ({stored / ran.seconds:,.0f}/s)"
    if ran.returncode != 0:
        note += f"; exit {ran.returncode}: {ran.stderr.strip()[-300:]}"
    return [
        Figure(
            ROW,
            f"peak RSS, logd sync of {label}",
            ran.peak_rss_mb,
            "MB",
            target=f"≤ {LIMIT_MB:.0f} MB",
            ok=ran.returncode == 0 and stored == expect and ran.peak_rss_mb <= LIMIT_MB,
            note=note,
        ),
        Figure(ROW, f"store bytes per entry, {label}", size / max(stored, 1), "B/entry",
               note=f"{size / 1e6:,.0f} MB file (FTS included), WAL checkpointed"),
    ]  # fmt: skip


def run(quick: bool) -> list[Figure]:
    """Peak RSS of the FleetIT and the Maestra backfills."""
    fleet = 20_000 if quick else 1_000_000
    rows = 20_000 if quick else 200_000
    figures = []
    with tempfile.TemporaryDirectory(prefix="logd-row4-") as tmp:
        with served(FleetITSimulator, "fleet", records=fleet) as source:
            figures += sync(source, Path(tmp) / "fleet", fleet, f"{fleet:,} FleetIT records")
        with served(maestra_export, "maestra", rows=rows) as source:
            source = {**source, "backfill": "1d", "export_poll": "0.2s"}
            figures += sync(source, Path(tmp) / "maestra", rows, f"a {rows:,}-row Maestra export")
    return figures
