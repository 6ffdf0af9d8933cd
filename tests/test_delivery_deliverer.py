"""The deliverer over the store interface: lanes first in first out, retries with backoff and
Retry-After, dead after `retry_for`, claims that keep two holders from sending one delivery,
and lanes that keep a slow sink from holding another. Each test runs on both stores.

Receivers are `httpx.MockTransport` handlers; time is an injected clock (no sleeps).
"""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from delivery_env import (
    STORES,
    STORES_WITH_CLAIMS,
    Env,
    close_postgres_stores,  # noqa: F401 - an autouse fixture
    entry,
    hook,
)

from logd.delivery.deliverer import Deliverer


def native_ids(request: httpx.Request) -> list[str]:
    return [e["native_id"] for e in json.loads(request.content)["entries"]]


class Script:
    """A receiver answering each request with the next status of a script (then 200)."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.seen.append(request)
            answer = self.answers.pop(0) if self.answers else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, text="nope" if status >= 300 else "")

    @property
    def ids(self) -> list[str]:
        return [r.headers["x-logd-delivery"] for r in self.seen]


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_lane_is_first_in_first_out_behind_a_retry(kind: str, tmp_path: Path) -> None:
    rx = Script(503)
    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=rx)
    for n in ("1", "2", "3"):
        env.commit(entry(n))
    first = env.deliverer.deliver_due()
    assert (first.delivered, first.retrying) == (0, 1)
    assert len(rx.seen) == 1  # the rest wait behind the failed one, untried
    assert env.deliverer.deliver_due().outcomes == []  # nothing due before its retry
    env.clock.now = env.deliverer.next_due()
    assert env.deliverer.deliver_due().delivered == 3
    assert [native_ids(r)[0] for r in rx.seen] == ["1", "1", "2", "3"]
    assert [(d.state, d.attempts) for d in env.rows()] == [("done", 2), ("done", 1), ("done", 1)]


def test_retries_back_off_exponentially_with_jitter_then_die_after_retry_for(
    kind: str, tmp_path: Path
) -> None:
    rx = Script(*[500] * 100)
    env = Env(kind, tmp_path, hook("https://hooks.example/a", retry_for="6h"), handler=rx)
    env.deliverer.rng = random.Random(7)
    env.commit(entry("1"))
    queued = env.clock()
    waits = []
    while (stats := env.deliverer.deliver_due()).dead == 0:
        assert stats.retrying == 1
        due = env.deliverer.next_due()
        waits.append((due - env.clock()).total_seconds())
        env.clock.now = due
    for n, wait in enumerate(waits[:-1]):  # the last is cut short by retry_for
        full = min(3600.0, 30.0 * 2**n)
        assert full / 2 <= wait <= full  # backoff * 2**attempts, jittered down to half
    assert waits[4] > waits[0] * 4
    assert env.clock() == queued + timedelta(hours=6)  # the last retry waits to the deadline
    [row] = env.rows()
    assert row.state == "dead" and row.attempts == len(waits) + 1
    assert (row.last_error or "").startswith(f"gave up after {row.attempts} attempts: HTTP 500")


def test_a_retry_after_holds_the_lane_at_least_that_long(kind: str, tmp_path: Path) -> None:
    rx = Script((429, {"Retry-After": "900"}))
    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=rx)
    env.commit(entry("1"))
    env.commit(entry("2"))
    assert env.deliverer.deliver_due().retrying == 1
    due = env.deliverer.next_due()
    assert due >= env.clock() + timedelta(seconds=900)
    env.clock.now = due - timedelta(seconds=1)
    assert env.deliverer.deliver_due().outcomes == [] and len(rx.seen) == 1
    env.clock.now = due
    assert env.deliverer.deliver_due().delivered == 2
    held, behind = env.rows()
    assert (held.attempts, behind.attempts) == (2, 1)  # the wait counted no attempt of "2"


def test_a_rejected_delivery_is_dead_at_once_and_the_lane_goes_on(
    kind: str, tmp_path: Path
) -> None:
    rx = Script(400)
    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=rx)
    env.commit(entry("1"))
    env.commit(entry("2"))
    stats = env.deliverer.deliver_due()
    assert (stats.dead, stats.delivered) == (1, 1)
    assert [(d.state, d.last_status) for d in env.rows()] == [("dead", 400), ("done", 200)]
    assert "HTTP 400: nope" in (env.rows()[0].last_error or "")


def test_a_slow_sink_does_not_hold_another_in_one_round(kind: str, tmp_path: Path) -> None:
    fast_done = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow.example":
            # Answers once the other sink was delivered to: lanes one after another fail.
            return httpx.Response(200 if fast_done.wait(5) else 504)
        fast_done.set()
        return httpx.Response(204)

    env = Env(
        kind,
        tmp_path,
        hook("https://slow.example/a", name="slow"),
        hook("https://fast.example/a", name="fast"),
        handler=handler,
    )
    env.commit(entry("1"))
    stats = env.deliverer.deliver_due()
    assert stats.by_sink == {
        "slow": {"delivered": 1, "retrying": 0, "dead": 0},
        "fast": {"delivered": 1, "retrying": 0, "dead": 0},
    }


def test_a_stuck_sink_does_not_hold_another_under_the_workers(kind: str, tmp_path: Path) -> None:
    release = threading.Event()
    fast: list[str] = []
    got = threading.Condition()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "stuck.example":
            release.wait(30)  # stuck until the test ends
            return httpx.Response(204)
        with got:
            fast.extend(native_ids(request))
            got.notify_all()
        return httpx.Response(204)

    env = Env(
        kind,
        tmp_path,
        hook("https://stuck.example/a", name="stuck"),
        hook("https://fast.example/a", name="fast"),
        handler=handler,
    )
    stop = threading.Event()
    env.deliverer.start(stop, idle=0.2)
    try:
        for i in range(5):
            env.commit(entry(str(i)))
            env.deliverer.kick()
            with got:
                assert got.wait_for(lambda n=i: len(fast) == n + 1, timeout=10), fast
        assert fast == ["0", "1", "2", "3", "4"]
    finally:
        stop.set()
        release.set()
        env.deliverer.close()


def test_deliveries_queued_while_a_lane_sends_go_out_in_the_same_round(
    kind: str, tmp_path: Path
) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(native_ids(request))
        if len(sent) == 1:
            env.commit(entry("2"))  # a poll commits another batch while the lane is sending
        return httpx.Response(204)

    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=handler)
    env.commit(entry("1"))
    assert env.deliverer.deliver_due().delivered == 2
    assert sent == ["1", "2"]


def test_a_lane_over_its_budget_leaves_the_rest_due_for_the_next_round(
    kind: str, tmp_path: Path
) -> None:
    rx = Script()
    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=rx, lane_budget=0)
    for n in ("1", "2", "3"):
        env.commit(entry(n))
    assert env.deliverer.deliver_due().delivered == 1
    # Claimed and not sent: released, due as before (a new holder takes them at once too).
    other = env.wire().deliverer
    assert other is not None
    other.lane_budget = 0
    assert other.deliver_due().delivered == 1
    assert env.deliverer.deliver_due().delivered == 1
    assert env.deliverer.next_due() is None and len(set(rx.ids)) == 3


def test_close_ends_an_attempt_under_way_without_counting_it(kind: str, tmp_path: Path) -> None:
    sending = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        sending.set()
        raise httpx.ReadTimeout("cut short", request=request)  # as an aborted attempt ends

    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=handler)
    env.commit(entry("1"))
    env.deliverer.close()
    assert env.deliverer.deliver_due().outcomes == []
    [row] = env.rows()
    assert (row.state, row.attempts, row.last_error) == ("pending", 0, None)


# -- two holders --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORES_WITH_CLAIMS)
def test_two_holders_never_send_the_same_delivery(kind: str, tmp_path: Path) -> None:
    first_sent = threading.Event()
    second_done = threading.Event()
    seen: list[str] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            seen.append(request.headers["x-logd-delivery"])
            first = len(seen) == 1
        if first:  # holder A is mid-send while holder B runs a whole round
            first_sent.set()
            second_done.wait(10)
        return httpx.Response(204)

    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=handler)
    for n in range(10):
        env.commit(entry(str(n)))
    a, b = env.deliverer, env.wire().deliverer
    assert a.holder != b.holder
    rounds: list[Any] = []
    worker = threading.Thread(target=lambda: rounds.append(a.deliver_due()))
    worker.start()
    assert first_sent.wait(10)
    rounds.append(b.deliver_due())
    second_done.set()
    worker.join(10)
    assert len(seen) == len(set(seen)) == 10
    assert sum(r.delivered for r in rounds) == 10
    assert [d.state for d in env.rows()] == ["done"] * 10


@pytest.mark.parametrize("kind", STORES_WITH_CLAIMS)
def test_a_claim_lapses_so_a_crashed_holders_deliveries_go_out(kind: str, tmp_path: Path) -> None:
    rx = Script()
    env = Env(kind, tmp_path, hook("https://hooks.example/a"), handler=rx)
    env.commit(entry("1"))
    [claimed] = env.store.claim_due("ops", "crashed-holder", 60, env.clock())
    assert env.deliverer.deliver_due().outcomes == []  # its claim still runs
    env.clock.advance(61)
    assert env.deliverer.deliver_due().delivered == 1
    assert rx.ids == [claimed.delivery_id]


def test_a_deliverer_takes_only_its_own_sinks(kind: str, tmp_path: Path) -> None:
    rx = Script()
    env = Env(
        kind,
        tmp_path,
        hook("https://hooks.example/a", name="ops"),
        hook("https://hooks.example/b", name="gone"),
        handler=rx,
    )
    env.commit(entry("1"))
    only_ops = Deliverer(
        [s for s in env.deliveries.sinks if s.name == "ops"], env.deliveries.outbox
    )
    only_ops.clock = env.clock
    assert only_ops.deliver_due().by_sink == {"ops": {"delivered": 1, "retrying": 0, "dead": 0}}
    assert {d.sink: d.state for d in env.rows()} == {"ops": "done", "gone": "pending"}
    assert only_ops.next_due() is None  # none left for its sinks
    assert env.deliverer.next_due() is not None
