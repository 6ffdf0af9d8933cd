"""Fetching ahead: the next page is requested while the store commits the last one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from logd_fleetit import FleetITSimulator

from logd import Batch, Entry, Status
from logd.engine.prefetch import Prefetch, merge
from logd.plugin.testing import SyncRun
from logd.store.interface import BatchResult, BatchTransaction

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def batch(*ids: str) -> Batch:
    return Batch([Entry(native_id=i, timestamp=NOW, status=Status.SUCCESS) for i in ids])


def test_the_next_page_is_fetched_while_a_batch_commits(tmp_path: Path) -> None:
    with FleetITSimulator(records=250) as sim:
        asked_page_two = threading.Event()
        first = True

        def wait_for_page_two(tx: BatchTransaction, result: BatchResult) -> None:
            nonlocal first
            if first:  # inside the first batch's transaction: page 2 must be on its way
                first = False
                for _ in range(500):
                    if len(sim.requests_to("/v2/integrations/logs/")) >= 2:
                        asked_page_two.set()
                        return
                    threading.Event().wait(0.01)

        run = SyncRun(tmp_path, [sim.demo_source("fleet")], batch_hooks=[wait_for_page_two])
        report = run.sync()["fleet"]
    assert report.ok and report.new == 250
    assert asked_page_two.is_set()


def test_batches_arrive_in_order_and_the_error_after_them() -> None:
    def poll() -> Iterator[Batch]:
        yield batch("a")
        yield batch("b")
        raise RuntimeError("page 3 failed")

    fetched = Prefetch(poll(), name="t").start()
    seen = []
    with pytest.raises(RuntimeError, match="page 3 failed"):
        for b, _ in fetched:
            seen.append(b.entries[0].native_id)
    assert seen == ["a", "b"]


def test_handed_over_ids_count_as_known_until_committed() -> None:
    release = threading.Event()
    known_while_fetching: list[set[str]] = []

    def poll() -> Iterator[Batch]:
        yield batch("a", "b")
        # What a provider that stops at known ids sees for its next page: as if stored.
        known_while_fetching.append(fetched.known(["a", "b", "c"]))
        release.set()
        yield batch("c")

    fetched = Prefetch(poll(), name="t")
    fetched.start()  # once `fetched` is bound: the provider calls back into it
    batches = iter(fetched)
    first, _ = next(batches)
    assert release.wait(5)
    assert known_while_fetching == [{"a", "b"}]
    fetched.committed(first)
    assert fetched.known(["a", "b"]) == set()
    assert [b.entries[0].native_id for b, _ in batches] == ["c"]


def test_close_stops_the_provider_in_its_thread_and_bounds_what_is_fetched() -> None:
    produced = 0
    closed_in: list[str] = []

    def endless() -> Iterator[Batch]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield batch(*(f"{produced}-{i}" for i in range(100)))
        finally:
            closed_in.append(threading.current_thread().name)

    fetched = Prefetch(endless(), name="t", ahead=300).start()
    next(iter(fetched))
    threading.Event().wait(0.2)
    assert produced <= 5  # held back at `ahead` entries, not running on
    fetched.close()
    assert closed_in == ["fetch-t"]


def test_prepare_runs_on_the_fetching_side() -> None:
    def poll() -> Iterator[Batch]:
        yield batch("a")

    threads: list[str] = []

    def prepare(b: Batch) -> int:
        threads.append(threading.current_thread().name)
        return len(b.entries)

    assert [p for _, p in Prefetch(poll(), name="t", prepare=prepare).start()] == [1]
    assert threads == ["fetch-t"]


def test_batches_that_pile_up_commit_together_with_the_last_cursor(tmp_path: Path) -> None:
    with FleetITSimulator(records=1000) as sim:
        commits: list[int] = []

        def slow_first_commit(tx: BatchTransaction, result: BatchResult) -> None:
            if not commits:  # the store lags once: the other nine pages pile up meanwhile
                for _ in range(500):
                    if len(sim.requests_to("/v2/integrations/logs/")) >= 10:
                        break
                    threading.Event().wait(0.01)
                threading.Event().wait(0.5)  # the last answer parsed and queued
            commits.append(result.new)

        run = SyncRun(
            tmp_path, [sim.demo_source("fleet")], batch_hooks=[slow_first_commit], group=2**30
        )
        report = run.sync()["fleet"]
    assert report.ok and report.new == 1000 and report.pages == 10
    assert commits == [100, 900]  # one transaction for the nine pages that were waiting
    assert run.cursor("fleet")["watermark"] is not None  # the last batch's cursor


def test_groups_stop_at_the_limit_and_merge_keeps_order_and_the_last_cursor() -> None:
    def poll() -> Iterator[Batch]:
        for i in range(5):
            b = batch(*(f"{i}-{j}" for j in range(10)))
            b.cursor = {"page": i} if i != 4 else None
            yield b

    fetched = Prefetch(poll(), name="t", prepare=lambda b: [e.native_id for e in b.entries])
    fetched.start()
    threading.Event().wait(0.2)  # all five queued
    groups = list(fetched.groups(25))
    assert [len(g) for g in groups] == [2, 2, 1]
    merged, prepared = merge(groups[0])
    assert [e.native_id for e in merged.entries] == prepared
    assert prepared[0] == "0-0" and prepared[-1] == "1-9"
    assert merged.cursor == {"page": 1} and merged.pages == 2
    assert merge(groups[1] + groups[2])[0].cursor == {"page": 3}  # a None cursor moves nothing


def test_groups_past_the_deadline_raise_unless_everything_was_handed_over() -> None:
    import time

    from logd.engine.prefetch import PollTimeout

    def endless() -> Iterator[Batch]:
        n = 0
        while True:
            n += 1
            yield Batch([], cursor={"n": n})

    # A provider that never stops yielding: the deadline still ends the walk.
    fetch = Prefetch(endless(), name="t").start()
    with pytest.raises(PollTimeout):
        for _ in fetch.groups(1, deadline=time.monotonic()):
            pass
    assert fetch.close(timeout=5)
    # Past the deadline with the provider finished and everything handed over: the walk is
    # complete, not timed out.
    fetch = Prefetch(iter([]), name="t").start()
    assert fetch.close(timeout=5)
    assert list(fetch.groups(1, deadline=time.monotonic() - 1)) == []
