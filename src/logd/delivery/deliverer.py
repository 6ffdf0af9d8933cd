"""The deliverer: sends what the outbox holds to each sink, and records every attempt.

    Deliverer(sinks, store).deliver_due()          # one bounded round (`logd sync`)
    Deliverer(sinks, store).start(stop); ….kick()  # a worker per sink (`logd run`)

Each sink has its own lane, first in, first out, in a thread of its own, so one slow or dead
receiver never holds up another. A lane claims its due deliveries from the store
(`claim_due`: no other holder gets them meanwhile, so two deliverers never send one delivery
twice), sends them one by one and records the outcomes (`record_attempts`).

What an attempt's `Sent` leads to: delivered is done; retry is tried again after exponential
backoff with jitter (a Retry-After stretches it) until the sink's `retry_for` has passed
since the delivery was queued, then dead; rejected is dead at once. A retry holds the rest of
its lane until the same time (the receiver is unwell: they would each spend a timeout on it).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from logd.delivery.sinks import Clock, Sink
from logd.errors import StoreError
from logd.store.interface import Attempt, Delivery

__all__ = ["Deliverer", "DeliveryStats", "Outbox", "Outcome", "holder_id"]

log = logging.getLogger("logd.delivery")

RECORD_EVERY = 50  # sends per write transaction of their outcomes, at most
RECORD_AFTER = 1.0  # seconds an outcome may wait to be recorded, about
WORKER_MIN_WAIT = 0.05  # seconds a worker waits at least between rounds (no busy loop)
CLAIM_LIMIT = 50  # deliveries a lane claims at once
#: Seconds a claim outlives the lane's budget and one attempt: the recording write may wait
#: for the store's writer (a backfill's batch) before it ends the claim.
CLAIM_SLACK = 60.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def holder_id() -> str:
    """A name for this deliverer in the store's claims: host, process, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Outbox(Protocol):
    """What the deliverer needs of a store (`logd.store.interface.Store` has all of it)."""

    def claim_due(
        self,
        sink: str,
        holder: str,
        ttl: float,
        now: datetime,
        *,
        ids: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Delivery]:
        """Due pending deliveries to `sink`, oldest first, claimed by `holder` for `ttl` s."""
        ...

    def record_attempts(
        self,
        attempts: Sequence[Attempt],
        *,
        hold: Sequence[str] = (),
        until: datetime | None = None,
    ) -> None:
        """Record attempts (ending their claims); hold pending `hold` until `until`."""
        ...

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        """The sinks with a pending delivery due (among `ids` when given)."""
        ...

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        """When the next delivery to one of `sinks` is due, or None."""
        ...


State = Literal["delivered", "retrying", "dead"]


@dataclass
class Outcome:
    """What one attempt at one delivery came to."""

    delivery_id: str
    sink: str
    state: State
    status: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None

    @property
    def webhook(self) -> str:
        """The sink's name (the name `logd webhooks` has always shown)."""
        return self.sink


@dataclass
class DeliveryStats:
    """What one round did, in total and per sink."""

    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    by_sink: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def by_webhook(self) -> dict[str, dict[str, int]]:
        """`by_sink`, by the name it had when every sink was a webhook."""
        return self.by_sink

    def add(self, outcome: Outcome) -> None:
        """Count one attempt's outcome."""
        setattr(self, outcome.state, getattr(self, outcome.state) + 1)
        counts = self.by_sink.setdefault(outcome.sink, {"delivered": 0, "retrying": 0, "dead": 0})
        counts[outcome.state] += 1
        self.outcomes.append(outcome)


class Deliverer:
    """Sends due deliveries and records each attempt; one lane (thread) per sink.

    `deliver_due` runs one round of every lane at once and returns when all are done (each
    bounded by `lane_budget` plus one attempt's timeout); `start` runs a worker per lane until
    stopped, each on its own timer. `close` (or leaving a `with` block) stops the workers and
    closes the sinks.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        store: Outbox,
        *,
        holder: str | None = None,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
        backoff: float = 30.0,
        max_backoff: float = 3600.0,
        lane_budget: float = 30.0,
    ) -> None:
        self.sinks = {s.name: s for s in sinks}
        self.store = store
        self.holder = holder or holder_id()
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff = backoff
        self.max_backoff = max_backoff
        # A round gives each lane about this many seconds; what is left waits for the next
        # round, so a slow receiver cannot hold a round (and the lanes after it) for long.
        self.lane_budget = lane_budget
        self._stats_lock = threading.Lock()
        # A lane already busy (another thread's round) is skipped, never waited for.
        self._lanes = {name: threading.Lock() for name in self.sinks}
        self._closed = False
        self._wakes: dict[str, threading.Event] = {}

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (`start`), end attempts under way at once (they are not counted:
        the deliveries stay as they were) and close the sinks."""
        self._closed = True
        self.kick()
        for sink in self.sinks.values():
            sink.close()

    def start(
        self,
        stop: threading.Event,
        *,
        on_round: Callable[[DeliveryStats], None] = lambda stats: None,
        busy: Callable[[], AbstractContextManager[None]] = nullcontext,
        idle: float = 5.0,
    ) -> None:
        """Deliver in the background until `stop` is set or `close`: one worker thread per
        sink, woken by `kick` and by its own timer (its lane's next due delivery, or `idle`
        seconds). `on_round` gets each round's stats; `busy` wraps each round (the daemon
        counts running work with it)."""
        for name, sink in self.sinks.items():
            wake = threading.Event()
            wake.set()  # a first round at once: deliveries left pending by an earlier run
            self._wakes[name] = wake
            threading.Thread(
                target=self._work,
                args=(name, wake, stop, on_round, busy, idle),
                name=f"logd-{sink.kind}-{name}",
                daemon=True,
            ).start()

    def kick(self) -> None:
        """Wake every worker: deliveries were queued (or the deliverer is closing)."""
        for wake in self._wakes.values():
            wake.set()

    def _work(
        self,
        name: str,
        wake: threading.Event,
        stop: threading.Event,
        on_round: Callable[[DeliveryStats], None],
        busy: Callable[[], AbstractContextManager[None]],
        idle: float,
    ) -> None:
        wait = 0.0
        sink = self.sinks[name]
        while not (stop.is_set() or self._closed):
            wake.wait(wait)
            wake.clear()
            if stop.is_set() or self._closed:
                break
            stats = DeliveryStats()
            wait = idle
            try:
                with busy():
                    self._lane(name, (), stats, stop)
                    due = self.store.next_due_at([name])
                if due is not None and (stats.outcomes or due > self.clock()):
                    # (Due now and nothing sent: another holder's claim has them; idle.)
                    wait = min(idle, max(WORKER_MIN_WAIT, (due - self.clock()).total_seconds()))
            except StoreError as exc:  # the store's fault: said once per round, retried
                log.error("%s %s: %s", sink.kind, name, exc)
            except Exception:  # a bug: keep its traceback, keep the lane alive
                log.exception("%s %s: delivery round failed", sink.kind, name)
            if stats.outcomes:
                on_round(stats)

    def deliver_due(
        self, stop: threading.Event | None = None, *, ids: Sequence[str] = ()
    ) -> DeliveryStats:
        """Deliver every due delivery (only `ids` when given); return counts by outcome.

        A lane claims again when it has sent what it claimed, so deliveries queued while it was
        sending go out in the same round (within its budget).
        """
        stats = DeliveryStats()
        # A delivery to a sink no longer configured stays pending until it comes back.
        lanes = [n for n in self.store.due_sinks(self.clock(), ids=ids) if n in self.sinks]
        if len(lanes) == 1:
            self._lane(lanes[0], ids, stats, stop)
        elif lanes:
            with ThreadPoolExecutor(len(lanes), thread_name_prefix="logd-delivery") as pool:
                futures = [pool.submit(self._lane, name, ids, stats, stop) for name in lanes]
                for future in futures:
                    future.result()
        return stats

    def next_due(self) -> datetime | None:
        """When the next pending delivery to a configured sink is due, or None."""
        return self.store.next_due_at(list(self.sinks))

    def _lane(
        self,
        name: str,
        ids: Sequence[str],
        stats: DeliveryStats,
        stop: threading.Event | None,
    ) -> None:
        lock = self._lanes[name]
        if not lock.acquire(blocking=False):
            return
        sink = self.sinks[name]
        try:
            started = time.monotonic()
            attempts = 0
            ttl = self.lane_budget + sink.timeout + CLAIM_SLACK
            # Claimed after the last outcomes were recorded: those sent meanwhile (by this
            # lane or another holder) are done, not due.
            while rows := self.store.claim_due(
                name, self.holder, ttl, self.clock(), ids=ids, limit=CLAIM_LIMIT
            ):
                # Outcomes are recorded a few at a time: one write transaction (one wait for
                # the writer a backfill keeps busy) per RECORD_EVERY sends or RECORD_AFTER
                # seconds. A crash in between sends those again, with the same delivery ids.
                unrecorded: list[Attempt] = []
                oldest = 0.0
                sent = 0
                hold: list[str] = []
                until: datetime | None = None
                try:
                    for row in rows:
                        if (stop is not None and stop.is_set()) or (
                            attempts and time.monotonic() - started > self.lane_budget
                        ):
                            return
                        outcome, attempt = self._attempt(sink, row)
                        if outcome.state != "delivered" and self._closed:
                            # Cut short by `close`: not the receiver's fault, not an attempt.
                            return
                        attempts += 1
                        sent += 1
                        if not unrecorded:
                            oldest = time.monotonic()
                        unrecorded.append(attempt)
                        with self._stats_lock:
                            stats.add(outcome)
                        if outcome.state == "retrying" and outcome.next_attempt_at is not None:
                            # The receiver is unwell: the rest wait with this one rather than
                            # each spending a timeout on it now.
                            until = outcome.next_attempt_at
                            return
                        if (
                            len(unrecorded) >= RECORD_EVERY
                            or time.monotonic() - oldest >= RECORD_AFTER
                        ):
                            self.store.record_attempts(unrecorded)
                            unrecorded = []
                finally:
                    # Claimed and not sent: back in the lane, due as they were (or held
                    # with the retry), their claims ended.
                    hold = [r.delivery_id for r in rows[sent:]]
                    if hold and until is None:
                        until = self.clock()
                    if unrecorded or hold:
                        self.store.record_attempts(unrecorded, hold=hold, until=until)
        finally:
            lock.release()

    def _attempt(self, sink: Sink, row: Delivery) -> tuple[Outcome, Attempt]:
        """Send `row` once; what came of it, and what to record (the caller records it)."""
        now = self.clock()
        sent = sink.send(row)
        error = sent.error
        state: State
        if sent.result == "delivered":
            state, store_state, next_at = "delivered", "done", now
        elif sent.result == "retry":
            deadline = datetime.fromisoformat(row.created_at) + timedelta(seconds=sink.retry_for)
            if now >= deadline:
                state, store_state, next_at = "dead", "dead", now
                error = f"gave up after {row.attempts + 1} attempts: {error}"
            else:
                delay = min(self.max_backoff, self.backoff * 2**row.attempts)
                delay *= 0.5 + self.rng.random() / 2  # jitter: receivers recovering get a spread
                if sent.retry_after is not None:
                    delay = max(delay, sent.retry_after)
                state, store_state = "retrying", "pending"
                next_at = min(now + timedelta(seconds=delay), deadline)
        else:
            state, store_state, next_at = "dead", "dead", now
        if state != "delivered" and not self._closed:
            log.warning("%s %s: %s %s: %s", sink.kind, sink.name, row.delivery_id, state, error)
        outcome = Outcome(
            row.delivery_id,
            sink.name,
            state,
            sent.status,
            error,
            next_at if state == "retrying" else None,
        )
        return outcome, Attempt(row.delivery_id, store_state, sent.status, error, next_at, now)
