"""Provider figures for `make bench`: Maestra's streaming export at 20k and 200k rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run() -> dict[str, Any]:
    """Peak RSS and throughput of a Maestra export sync, each size in a fresh process."""
    script = Path(__file__).with_name("maestra_rss.py")
    out: dict[str, Any] = {}
    for rows in (20_000, 200_000):
        done = subprocess.run(
            [sys.executable, str(script), str(rows)], capture_output=True, text=True, check=True
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        for key in ("stored", "seconds", "rows_per_s", "peak_rss_mb"):
            out[f"maestra_{rows // 1000}k_{key}"] = figures[key]
    return out
