"""Request budgets: max_rate, shared groups, the vendor's counters and Retry-After."""

from __future__ import annotations

import io
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from logd_fleetit import FleetITSimulator

from logd.cli.status import collect_status, write_status
from logd.config.settings import SourceConfig
from logd.engine.poller import SourceReport
from logd.errors import SourceError
from logd.plugin.http import RetryPolicy, SourceClient
from logd.plugin.ratelimit import Budget, Budgets, format_rate, parse_rate, reset_seconds
from logd.plugin.testing import SyncRun
from logd.store.sqlite.store import Store


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", 10.0), ("600/m", 10.0), ("36/h", 0.01), (" 2.5 / sec ", 2.5), (4, 4.0)],
)
def test_rates_read_per_second_minute_or_hour(text: object, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("bad", ["fast", "10", "0/s", "-1/s", "10/d", True])
def test_a_rate_that_is_not_one_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_off_turns_a_provider_default_off_and_rates_print_in_a_whole_unit() -> None:
    assert parse_rate("off") == math.inf
    assert [format_rate(r) for r in (20.0, 0.5, 1 / 3600, math.inf)] == [
        "20/s",
        "30/m",
        "1/h",
        "off",
    ]
    source = SourceConfig(name="s", provider="p", max_rate="600/m", rate_group="store-1")
    assert (source.max_rate, source.rate_group) == (10.0, "store-1")


def test_reset_headers_are_a_delta_an_epoch_time_or_epoch_milliseconds() -> None:
    now = 1_800_000_000.0
    assert reset_seconds("30", now) == 30.0
    assert reset_seconds("1800000012", now) == 12.0
    assert reset_seconds("1800000004500", now) == 4.5
    assert reset_seconds("1799999990", now) == 0.0  # already past
    assert reset_seconds("soon", now) is None and reset_seconds("nan", now) is None


def test_max_rate_spaces_requests_evenly_and_queues_waiters_in_order() -> None:
    budget = Budget("g")
    budget.set_rate("a", 10.0)
    waits = [budget.reserve(now=100.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert budget.reserve(now=101.0) == 0.0  # idle time refills one request, not a burst
    assert budget.reserve(now=101.0) == pytest.approx(0.1)
    budget.sent(now=101.15)  # that one went out late: the next keeps its distance from it
    assert budget.reserve(now=101.15) == pytest.approx(0.1)


def test_a_group_keeps_to_the_lowest_rate_of_its_sources() -> None:
    budgets = Budgets()
    first = budgets.get("store-1", "a", 20.0)
    assert budgets.get("store-1", "b", 5.0) is first and first.rate == 5.0
    budgets.get("store-1", "b", math.inf)  # b set to "off": a's rate is what is left
    assert first.rate == 20.0
    assert budgets.get("other", "c", None).rate is None


def test_the_vendors_counters_slow_the_group_down_before_the_budget_runs_out() -> None:
    budget = Budget("g")
    budget.observe(httpx.Headers({"X-RateLimit-Remaining": "50", "X-RateLimit-Reset": "10"}), 0.0)
    assert budget.reserve(now=0.0) == 0.0  # plenty left: no slowing down
    budget.observe(httpx.Headers({"RateLimit-Remaining": "4", "RateLimit-Reset": "2"}), 0.0)
    waits = [budget.reserve(now=0.0) for _ in range(3)]
    assert waits == pytest.approx([0.5, 1.0, 1.5])  # what is left, spread until the reset
    budget.observe(httpx.Headers({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"}), 10.0)
    assert budget.reserve(now=10.0) == pytest.approx(7.0)


def test_a_limit_header_sets_what_counts_as_few() -> None:
    budget = Budget("g")
    headers = {"RateLimit-Limit": "1000", "RateLimit-Remaining": "90", "RateLimit-Reset": "9"}
    budget.observe(httpx.Headers(headers), 0.0)
    assert budget.reserve(now=0.0) == pytest.approx(0.1)  # 90 <= a tenth of 1000


def client(budget: Budget, handler: object, waits: list[float], **kwargs: object) -> SourceClient:
    return SourceClient(
        "src",
        "https://api.example.com",
        retry=RetryPolicy(attempts=3, max_wait=30),
        sleep=waits.append,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        budget=budget,
        **kwargs,  # type: ignore[arg-type]
    )


def test_retry_after_pauses_the_whole_group_once() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "5"}), httpx.Response(200, json={})]
    budget = Budget("store-1")
    a_waits: list[float] = []
    b_waits: list[float] = []
    a = client(budget, lambda r: answers.pop(0), a_waits)
    b = client(budget, lambda r: httpx.Response(200, json={}), b_waits)
    assert a.get_json("/x") == {}
    b.get_json("/y")
    assert a_waits == [5.0]  # its retry waited; the budget does not make it wait twice
    assert len(b_waits) == 1 and 4.0 < b_waits[0] <= 5.0  # the other source waits too
    assert b.rate_waited == pytest.approx(b_waits[0]) and budget.waited == b.rate_waited


def test_a_wait_on_the_budget_ends_when_the_source_is_stopping() -> None:
    budget = Budget("g")
    budget.pause(60)
    waits: list[float] = []
    c = client(budget, lambda r: httpx.Response(200, json={}), waits, stopping=lambda: True)
    with pytest.raises(SourceError, match="stopped while waiting on the rate budget"):
        c.get_json("/x")
    assert len(waits) == 1


def test_a_long_wait_is_reported_as_it_starts() -> None:
    budget = Budget("g")
    budget.pause(4)
    told: list[float] = []
    c = client(budget, lambda r: httpx.Response(200, json={}), [], on_wait=told.append)
    c.get_json("/x")
    assert len(told) == 1 and 3.0 < told[0] <= 4.0


def test_a_poll_shows_its_wait_as_it_starts_and_counts_it(tmp_path: Path) -> None:
    with FleetITSimulator(records=10) as sim:
        run = SyncRun(tmp_path, [sim.demo_source("fleet")])
        run.engine.budgets.get("fleet", "fleet", None).pause(3)
        seen: list[tuple[str | None, float]] = []

        def progress(r: SourceReport) -> None:
            if r.waiting_until is not None and r.waiting_since is not None:
                seen.append((r.waiting, r.waiting_until - r.waiting_since))

        (report,) = run.engine.sync(run.settings.sources, progress=progress)
    assert len(seen) == 1 and seen[0][0] == "rate limited" and 2 < seen[0][1] <= 3
    assert report.ok and 2 < report.rate_waited <= 3
    assert report.waiting_until is None  # cleared with the next batch
    assert run.waits == [report.rate_waited]  # through the engine's (here recorded) sleep


def test_the_progress_line_counts_down_a_rate_budget_wait() -> None:
    from rich.progress import Progress

    from logd.cli.sync import _line

    with Progress(disable=True) as progress:
        now = time.monotonic()
        task_id = progress.add_task(
            "", line="2 pages", waiting="rate limited", waiting_since=now, waiting_until=now + 4.4
        )
        task = progress.tasks[task_id]
        assert str(_line(task)) == "2 pages; rate limited, resuming in 4 s"
        progress.update(task_id, waiting_until=now - 1)  # over: the counts alone again
        assert str(_line(task)) == "2 pages"


def test_status_shows_a_poll_waiting_on_its_budget_until_the_poll_ends(tmp_path: Path) -> None:
    with FleetITSimulator(records=10) as sim:
        run = SyncRun(tmp_path, [sim.demo_source("fleet")])
        run.engine.budgets.get("fleet", "fleet", None).pause(30)  # say, a vendor's reset
        waiting, go_on = threading.Event(), threading.Event()

        def sleep(seconds: float) -> None:  # the engine's sleep, held until status was read
            if seconds >= 1:
                waiting.set()
                assert go_on.wait(60)

        run.engine.sleep = sleep
        reports: list[dict[str, SourceReport]] = []
        poll = threading.Thread(target=lambda: reports.append(run.sync()), daemon=True)
        poll.start()
        try:
            assert waiting.wait(60)
            with Store(run.settings.database, create=False) as reader:  # as `logd status` does
                (row,) = collect_status(reader)
                out = io.StringIO()
                write_status([row], "table", out)
        finally:
            go_on.set()
            poll.join(60)
        (after,) = collect_status(run.store)
    assert row["state"] == "polling" and row["waiting"] == "rate limited"
    until = datetime.fromisoformat(row["waiting_until"]) - datetime.now(UTC)
    assert timedelta(seconds=20) < until <= timedelta(seconds=31)
    assert "polling (rate limited until " in out.getvalue()
    assert reports[0]["fleet"].ok
    assert after["state"] == "ok" and after["waiting"] is None and after["waiting_until"] is None
    assert run.store.db.execute("SELECT waiting, waiting_until FROM poll_runs").fetchall() == [
        (None, None)
    ]


def test_a_wait_note_is_skipped_not_waited_for_while_the_store_is_busy(tmp_path: Path) -> None:
    with Store(tmp_path / "logd.db") as store:
        run_id = store.start_run("s")
        until = datetime.now(UTC) + timedelta(seconds=30)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.transaction():
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        try:
            assert held.wait(60)
            assert store.note_waiting(run_id, "rate limited", until, timeout=0.05) is False
        finally:
            release.set()
            holder.join(60)
        assert store.note_waiting(run_id, "rate limited", until) is True
        assert store.run_waits() == {"s": ("rate limited", until.isoformat(timespec="seconds"))}
        store.finish_run(run_id)
        assert store.run_waits() == {}
