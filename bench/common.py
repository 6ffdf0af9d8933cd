"""What every benchmark row reports, and the helpers the rows share.

A row module exposes `run(quick: bool) -> list[Figure]`. Each figure stands next to the
baseline it is judged against, measured in the same run, so that a slower or busier machine
moves both and the ratio stays meaningful.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class Figure:
    """One measured figure, its baseline and its target."""

    row: str  # "1 backfill", "2 search", …
    name: str  # what was measured, e.g. 'logd sync, entries/s'
    value: float | None
    unit: str
    baseline: str = ""  # what the baseline is, e.g. "sqlite-utils insert_all"
    baseline_value: float | None = None
    target: str = ""  # the target in words, e.g. "≥ 60 % of baseline"
    ok: bool | None = None  # None: reported only, no target
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form in results.json."""
        return asdict(self)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and p95 of `samples`."""
    ordered = sorted(samples)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    return statistics.median(ordered), p95


def timed_ms(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and p95 in milliseconds of `runs` calls of `fn`, after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def query_store(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read a logd store, read-only, even while a daemon writes it; [] before it exists."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # tables not made yet
        return []
    finally:
        conn.close()


def count_entries(db: Path) -> int:
    """Entries in a logd store (the largest key is no count: keys are times)."""
    rows = query_store(db, "SELECT count(*) FROM entries")
    return int(rows[0][0]) if rows else 0
