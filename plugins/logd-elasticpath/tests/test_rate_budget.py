"""A backfill against an Elastic Path store that answers 429 above its rate: staying under it.

These run in real time (a few seconds): the budget spaces requests by the clock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from logd_elasticpath import ElasticPathSimulator

from logd.plugin.testing import SyncRun

RECORDS = (300, 200, 200)  # seven pages of 100 and a token: eight requests


def backfill(tmp_path: Path, sim: ElasticPathSimulator, **keys: Any) -> SyncRun:
    run = SyncRun(tmp_path, [{**sim.demo_source("ep"), **keys}])
    run.engine.sleep = time.sleep  # the budget's waits are real here
    report = run.sync()["ep"]
    assert report.ok, report.error
    assert run.count() == sum(RECORDS)
    return run


def test_max_rate_keeps_a_backfill_free_of_429s(tmp_path: Path) -> None:
    with ElasticPathSimulator(integrations=RECORDS, rate_limit=5) as sim:
        run = backfill(tmp_path, sim, max_rate="4/s")
    assert sim.served[429] == 0
    assert sum(run.waits) == 0  # no retry was needed


def test_the_vendors_remaining_and_reset_headers_alone_keep_429s_to_one_at_most(
    tmp_path: Path,
) -> None:
    with ElasticPathSimulator(integrations=RECORDS, rate_limit=3, rate_headers=True) as sim:
        backfill(tmp_path, sim, max_rate="off")
    assert sim.served[429] <= 1


def test_without_a_budget_the_same_backfill_bounces_off_the_limit(tmp_path: Path) -> None:
    # The control: what the two tests above prevent.
    with ElasticPathSimulator(integrations=RECORDS, rate_limit=3) as sim:
        run = SyncRun(tmp_path, [{**sim.demo_source("ep"), "max_rate": "off"}])
        run.sync()
    assert sim.served[429] >= 1
