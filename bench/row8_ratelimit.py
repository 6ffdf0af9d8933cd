"""Row 8, rate limits: an Elastic Path backfill against a store that answers 429 above 20/s.

The simulator counts requests per second of its clock and answers 429 (Retry-After: 1) past
`RATE`; the source runs at the provider's default `max_rate` (20/s), through the real engine
with real sleeps. Figures: the 429s the backfill met (target 0) and its time next to the ideal
(target within 10 %). The ideal is requests ÷ rate, or the same backfill from an unlimited
store with no budget when that is slower (a busy machine whose pages take longer than 1/rate
to process): the budget may cost what the rate demands, nothing more. Quick mode takes the
best of three runs of each, alternated, so a busy machine's noise hits both alike.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import Figure
from logd_elasticpath import ElasticPath, ElasticPathSimulator

from logd.engine.poller import SourceReport
from logd.plugin.testing import SyncRun

ROW = "8 rate limits"
RATE = 20  # requests a second the simulated store allows


def backfill(records: int, limit: int | None, max_rate: str) -> tuple[SourceReport, int, float]:
    """One backfill of `records`; its report, the 429s it met and its seconds."""
    with (
        ElasticPathSimulator(integrations=(records,), rate_limit=limit) as sim,
        tempfile.TemporaryDirectory(prefix="logd-bench-rate-") as tmp,
    ):
        run = SyncRun(Path(tmp), [{**sim.demo_source("ep"), "max_rate": max_rate}])
        run.engine.sleep = time.sleep
        started = time.perf_counter()
        report = run.sync()["ep"]
        took = time.perf_counter() - started
        run.close()
    if not report.ok:
        raise RuntimeError(report.error)
    return report, sim.served[429], took


def run(quick: bool) -> list[Figure]:
    """Backfill 10k records (quick: 1k) under the store's limit; count 429s and time it."""
    records = 1_000 if quick else 10_000
    default = ElasticPath.max_rate or "off"  # what a source without max_rate gets
    backfill(100, None, "off")  # warm-up: imports, plugin loading, the first store
    unlimited, took, bounced = float("inf"), float("inf"), 0
    for _ in range(3 if quick else 1):
        unlimited = min(unlimited, backfill(records, None, "off")[2])
        report, met, seconds = backfill(records, RATE, default)
        took, bounced = min(took, seconds), bounced + met
    ideal = max(report.requests / RATE, unlimited)
    return [
        Figure(
            ROW,
            f"429s in a {records:,}-record backfill at {default}",
            float(bounced),
            "",
            target="0",
            ok=bounced == 0,
            note=f"{report.requests} requests, store limit {RATE}/s, "
            f"{report.rate_waited:.1f} s waited on the budget",
        ),
        Figure(
            ROW,
            "backfill time next to the ideal",
            took,
            "s",
            baseline=f"max(requests ÷ rate = {report.requests / RATE:.2f} s, "
            f"no limit at all = {unlimited:.2f} s)",
            baseline_value=ideal,
            target="≤ 110 % of ideal",
            ok=took <= ideal * 1.1,
        ),
    ]
