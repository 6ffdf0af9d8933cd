"""Failure webhooks: the batch hook that queues deliveries, and the deliverer that sends them.

    store.commit_batch(..., hooks=[outbox_hook(settings)])   # outbox rows commit with entries
    Deliverer(settings, store).deliver_due()                  # one bounded round (`logd sync`)
    Deliverer(settings, store).start(stop); ….kick()          # a worker per webhook (`logd run`)

Delivery outcomes: 2xx is done; 408, 429 (after its Retry-After), 5xx, network errors and
timeouts are retried with exponential backoff and jitter until `retry_for` has passed since the
delivery was queued, then dead; any other status (redirects included: they are never followed)
is dead at once, with the response text kept, every webhook secret in it masked (`logd.redact`,
which masks them in every log line too). Each webhook
has its own lane, first in, first out, in a thread of its own, and each attempt ends within the
webhook's `timeout` (the whole request, the answer included), so one slow or dead endpoint
never holds up another.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from logd import redact
from logd.__about__ import __version__
from logd.config.settings import Settings, WebhookConfig
from logd.delivery.signing import sign
from logd.errors import QueryError, StoreError
from logd.plugin.deadline import Deadline
from logd.plugin.deadline import transport as deadline_transport
from logd.plugin.http import redact_url, retry_after_seconds
from logd.store.interface import (
    Attempt,
    BatchHook,
    BatchResult,
    BatchTransaction,
    Delivery,
    NewDelivery,
    Store,
)
from logd.store.query_language import Node, parse
from logd.store.sqlite.outbox import encode_body, new_delivery_id

__all__ = [
    "Deliverer",
    "DeliveryStats",
    "Outcome",
    "outbox_hook",
    "send_test",
]

log = logging.getLogger("logd.webhooks")

Clock = Callable[[], datetime]
ERROR_TEXT_LIMIT = 4000  # enough of a receiver's error page to act on, not a whole HTML site
RECORD_EVERY = 50  # sends per write transaction of their outcomes, at most
RECORD_AFTER = 1.0  # seconds an outcome may wait to be recorded, about
WORKER_MIN_WAIT = 0.05  # seconds a worker waits at least between rounds (no busy loop)
CLAIM_SLACK = 30.0  # seconds a claim outlasts a lane's round: recording its outcomes


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- queueing -------------------------------------------------------------------------------


def outbox_hook(
    settings: Settings,
    *,
    clock: Clock = _utcnow,
    on_queued: Callable[[], None] | None = None,
) -> BatchHook:
    """A batch hook that queues one delivery per webhook per source for the batch's new failures.

    Runs inside the batch's transaction: the entries are already written, so the `match` filter
    runs against the same FTS5 index `logd query --fts` uses, and the bodies carry entries in
    the query's JSON shape. A backfill batch (`BatchResult.backfill`: the source's first poll)
    queues nothing, except for webhooks with `alert_backfill`. `on_queued` is called (still
    inside the transaction: it should only set a flag) when the batch queued at least one
    delivery.
    """
    webhooks = list(settings.webhooks)
    # Compiled once: check-config validated each expression with the same parser.
    matches = {w.name: _match_text(w) for w in webhooks if w.match is not None}

    def hook(tx: BatchTransaction, result: BatchResult) -> None:
        source = tx.source
        targets = [w for w in webhooks if w.sources is None or source in w.sources]
        if result.backfill:  # a first poll's failures are history, not news
            targets = [w for w in targets if w.alert_backfill]
        if not result.new_failures or not targets:
            return
        rows = tx.rows([e.native_id for e in result.new_failures])
        now = clock()
        queued = False
        for webhook in targets:
            keys = sorted(rows)
            if webhook.max_age is not None:
                cutoff = now - timedelta(seconds=webhook.max_age)
                keys = [k for k in keys if datetime.fromisoformat(rows[k].timestamp) >= cutoff]
            match = matches.get(webhook.name)
            if match is not None and keys:
                keys = _matching(tx, webhook, match, keys)
            for start in range(0, len(keys), webhook.max_entries):
                chunk = [rows[k] for k in keys[start : start + webhook.max_entries]]
                delivery_id = new_delivery_id()
                entries = [r.as_dict() for r in chunk]
                body = encode_body(delivery_id, webhook.name, source, chunk[0].provider, entries)
                tx.enqueue(
                    NewDelivery(
                        delivery_id, webhook.name, source, chunk[0].provider, len(chunk), body
                    ),
                    now,
                )
                queued = True
        if queued and on_queued is not None:
            on_queued()

    return hook


def _match_text(webhook: WebhookConfig) -> Node | None:
    """The webhook's parsed `match`, or None to send every failure."""
    try:
        node = parse(webhook.match or "")
    except QueryError as exc:
        # check-config rejects it; should one slip through, alert rather than drop.
        log.error("webhook %s: match is not valid (%s); sending unfiltered", webhook.name, exc)
        return None
    return node


def _matching(
    tx: BatchTransaction, webhook: WebhookConfig, match: Node, keys: list[int]
) -> list[int]:
    """The keys whose entries match `match`, the webhook's parsed search expression."""
    try:
        found = tx.matching(match, keys)
    except StoreError as exc:
        # Not the expression (compiled from a checked tree): a store fault. Alert all.
        log.error("webhook %s: match failed (%s); sending unfiltered", webhook.name, exc)
        return keys
    return [k for k in keys if k in found]


class _WebhookClient(httpx.Client):
    """An httpx client whose `post_within` has a whole-request deadline of the client's timeout
    (`logd.deadline`: a receiver answering a byte a second never trips a per-read timeout)."""

    def __init__(self, timeout: float, transport: httpx.BaseTransport | None) -> None:
        self.deadline = Deadline(
            expired="no complete answer within the webhook's timeout",
            closing="the deliverer is closing",
        )
        super().__init__(
            transport=transport or deadline_transport(self.deadline),
            timeout=timeout,
            follow_redirects=False,
        )
        self.whole = timeout

    def post_within(self, url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST and read the whole answer within the timeout, or raise httpx.TimeoutException."""
        with self.deadline.until(time.monotonic() + self.whole):
            return self.post(url, content=content, headers=headers)


# -- delivering -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one attempt at one delivery came to."""

    delivery_id: str
    webhook: str
    state: str  # "delivered", "retrying" or "dead"
    status: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass
class DeliveryStats:
    """What one `deliver_due` round did, in total and per webhook."""

    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    by_webhook: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        """Count one attempt's outcome."""
        setattr(self, outcome.state, getattr(self, outcome.state) + 1)
        counts = self.by_webhook.setdefault(
            outcome.webhook, {"delivered": 0, "retrying": 0, "dead": 0}
        )
        counts[outcome.state] += 1
        self.outcomes.append(outcome)


class Deliverer:
    """Sends due outbox rows and records each attempt; one lane (thread) per webhook.

    `deliver_due` runs one round of every lane at once and returns when all are done (each
    bounded by `lane_budget` plus one attempt's timeout); `start` runs a worker per lane until
    stopped, each on its own timer. Each lane keeps its HTTP client (and so its connection)
    from one round to the next; `close` (or leaving a `with` block) closes them.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
        backoff: float = 30.0,
        max_backoff: float = 3600.0,
        lane_budget: float = 30.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff = backoff
        self.max_backoff = max_backoff
        # A round gives each lane about this many seconds; what is left waits for the next
        # round, so a slow endpoint cannot hold a round (and the endpoints after it) for long.
        self.lane_budget = lane_budget
        self.webhooks = {w.name: w for w in settings.webhooks}
        for webhook in settings.webhooks:  # httpx's debug lines show the URL, tokens and all
            redact.register(*webhook_secrets(webhook))
        self._stats_lock = threading.Lock()
        # A lane already busy (another thread's round) is skipped, never waited for.
        self._lanes = {name: threading.Lock() for name in self.webhooks}
        self._clients: dict[str, _WebhookClient] = {}
        self._closed = False
        self._wakes: dict[str, threading.Event] = {}
        #: Who claims deliveries (`Store.claim_due`): this deliverer, in this process.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (`start`), end attempts under way at once (they are not counted:
        the rows stay as they were) and close the lanes' HTTP clients."""
        self._closed = True
        self.kick()
        for client in list(self._clients.values()):
            client.deadline.abort()
        for name in self._lanes:
            self._drop_client_if_idle(name)

    def start(
        self,
        stop: threading.Event,
        *,
        on_round: Callable[[DeliveryStats], None] = lambda stats: None,
        busy: Callable[[], AbstractContextManager[None]] = nullcontext,
        idle: float = 5.0,
    ) -> None:
        """Deliver in the background until `stop` is set or `close`: one worker thread per
        webhook, woken by `kick` and by its own timer (its lane's next due row, or `idle`
        seconds), so a slow endpoint holds up only its own lane. `on_round` gets each round's
        stats; `busy` wraps each round (the daemon counts running work with it)."""
        for name in self.webhooks:
            wake = threading.Event()
            wake.set()  # a first round at once: rows left pending by an earlier run
            self._wakes[name] = wake
            threading.Thread(
                target=self._work,
                args=(name, wake, stop, on_round, busy, idle),
                name=f"logd-webhook-{name}",
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
                if due is not None:
                    wait = min(idle, max(WORKER_MIN_WAIT, (due - self.clock()).total_seconds()))
            except StoreError as exc:  # the store's fault: said once per round, retried
                log.error("webhook %s: %s", name, exc)
            except Exception:  # a bug: keep its traceback, keep the lane alive
                log.exception("webhook %s: delivery round failed", name)
            if stats.outcomes:
                on_round(stats)
        self._drop_client_if_idle(name)

    def deliver_due(
        self, stop: threading.Event | None = None, *, ids: Sequence[str] = ()
    ) -> DeliveryStats:
        """Deliver every due row (only `ids` when given); return counts by outcome.

        A lane reads its due rows once it holds its lane, and reads again when it has sent them,
        so deliveries queued while it was sending go out in the same round (within its budget).
        """
        stats = DeliveryStats()
        # A row for a webhook no longer configured stays pending until it comes back.
        due = self.store.due_sinks(self.clock(), ids=ids)
        lanes = [name for name in due if name in self.webhooks]
        if len(lanes) == 1:
            self._lane(lanes[0], ids, stats, stop)
        elif lanes:
            with ThreadPoolExecutor(len(lanes), thread_name_prefix="logd-webhook") as pool:
                futures = [pool.submit(self._lane, name, ids, stats, stop) for name in lanes]
                for future in futures:
                    future.result()
        return stats

    def next_due(self) -> datetime | None:
        """When the next pending delivery to a configured webhook is due, or None."""
        return self.store.next_due_at(list(self.webhooks))

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
        webhook = self.webhooks[name]
        try:
            started = time.monotonic()
            attempts = 0
            # Read under the lane's lock, after the last outcomes were recorded: rows sent
            # meanwhile (by this lane or another round's) are done, not due.
            # Claimed for the round (its budget and one more attempt): no other sender of
            # this store sends them meanwhile; recording an attempt ends its claim.
            ttl = self.lane_budget + webhook.timeout + CLAIM_SLACK
            while rows := self.store.claim_due(name, self.holder, ttl, self.clock(), ids=ids):
                client = self._client(webhook)
                # Outcomes are recorded a few at a time: one write transaction (one wait for
                # the writer lock a backfill keeps busy) per RECORD_EVERY sends or RECORD_AFTER
                # seconds. A crash in between sends those again, with the same delivery ids.
                unrecorded: list[Attempt] = []
                oldest = 0.0
                try:
                    for i, row in enumerate(rows):
                        if stop is not None and stop.is_set():
                            return
                        if attempts and time.monotonic() - started > self.lane_budget:
                            return
                        outcome, attempt = self._attempt(client, webhook, row)
                        if outcome.state != "delivered" and self._closed:
                            # Cut short by `close`: not the endpoint's fault, not an attempt.
                            return
                        attempts += 1
                        if not unrecorded:
                            oldest = time.monotonic()
                        unrecorded.append(attempt)
                        with self._stats_lock:
                            stats.add(outcome)
                        if outcome.state == "retrying" and outcome.next_attempt_at is not None:
                            # The endpoint is unwell: the rest wait with this one rather than
                            # each spending a timeout on it now.
                            rest = [r.delivery_id for r in rows[i + 1 :]]
                            self.store.record_attempts(
                                unrecorded, hold=rest, until=outcome.next_attempt_at
                            )
                            unrecorded = []
                            return
                        if (
                            len(unrecorded) >= RECORD_EVERY
                            or time.monotonic() - oldest >= RECORD_AFTER
                        ):
                            self.store.record_attempts(unrecorded)
                            unrecorded = []
                finally:
                    self.store.record_attempts(unrecorded)
        finally:
            lock.release()
            if self._closed:
                self._drop_client_if_idle(name)

    def _client(self, webhook: WebhookConfig) -> _WebhookClient:
        """The lane's client (only its lane's thread calls this, holding the lane)."""
        client = self._clients.get(webhook.name)
        if client is None:
            client = _WebhookClient(webhook.timeout, self.transport)
            client.deadline.aborted = self._closed
            self._clients[webhook.name] = client
        return client

    def _drop_client_if_idle(self, name: str) -> None:
        lock = self._lanes[name]
        if not lock.acquire(blocking=False):
            return  # mid-round: the lane drops it when the round ends (it sees `_closed`)
        try:
            client = self._clients.pop(name, None)
            if client is not None:
                client.close()
        finally:
            lock.release()

    def _attempt(
        self, client: _WebhookClient, webhook: WebhookConfig, row: Delivery
    ) -> tuple[Outcome, Attempt]:
        """Send `row` once; what came of it, and what to record (the caller records it)."""
        now = self.clock()
        status, error, retry_after = _post(client, webhook, row.delivery_id, row.body, now)
        if status is not None and 200 <= status < 300:
            state, store_state, next_at = "delivered", "done", now
        elif status is None or status in (408, 429) or status >= 500:
            deadline = datetime.fromisoformat(row.created_at) + timedelta(seconds=webhook.retry_for)
            if now >= deadline:
                state, store_state, next_at = "dead", "dead", now
                error = f"gave up after {row.attempts + 1} attempts: {error}"
            else:
                delay = min(self.max_backoff, self.backoff * 2**row.attempts)
                delay *= 0.5 + self.rng.random() / 2  # jitter: receivers recovering get a spread
                if retry_after is not None:
                    delay = max(delay, retry_after)
                state, store_state = "retrying", "pending"
                next_at = min(now + timedelta(seconds=delay), deadline)
        else:
            state, store_state, next_at = "dead", "dead", now
        if state != "delivered":
            log.warning("webhook %s: %s %s: %s", webhook.name, row.delivery_id, state, error)
        outcome = Outcome(
            row.delivery_id,
            webhook.name,
            state,
            status,
            error,
            next_at if state == "retrying" else None,
        )
        return outcome, Attempt(row.delivery_id, store_state, status, error, next_at, now)


def _post(
    client: _WebhookClient, webhook: WebhookConfig, delivery_id: str, body: bytes, now: datetime
) -> tuple[int | None, str | None, float | None]:
    """Send one signed attempt; (status or None, error text or None, Retry-After seconds)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"logd/{__version__}",
        **{name: value.get_secret_value() for name, value in webhook.headers.items()},
        **sign(
            webhook.signature,
            webhook.secret.get_secret_value(),
            delivery_id,
            int(now.timestamp()),
            body,
        ),
    }
    secrets = webhook_secrets(webhook)
    try:
        response = client.post_within(webhook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # httpx's messages name the failure, not the URL; the URL may carry a token.
        return None, _cut(redact.mask(f"{type(exc).__name__}: {exc}", secrets)), None
    status = response.status_code
    if 200 <= status < 300:
        return status, None, None
    if 300 <= status < 400:
        location = response.headers.get("location")
        where = f" to {redact_url(httpx.URL(webhook.url).join(location))}" if location else ""
        text = redact.mask(f"HTTP {status} redirect{where} not followed", secrets)
        return status, f"{text}; configure the final URL", None
    # Masked before it is cut: a secret straddling the cut would otherwise leave its prefix.
    text = _cut(redact.mask(" ".join(response.text.split()), secrets)) or response.reason_phrase
    return status, f"HTTP {status}: {text}", retry_after_seconds(response)


def webhook_secrets(webhook: WebhookConfig) -> list[str]:
    """Every value of `webhook` that must never be logged or stored: its secret, each header
    value (and the token after a scheme, as in `Bearer TOKEN`), the URL's password and query
    values, and path segments long enough to be tokens (`/services/T0/B0/<token>`)."""
    values = [webhook.secret.get_secret_value()]
    for value in webhook.headers.values():
        values += redact.header_secrets(value.get_secret_value())
    values += redact.url_secrets(webhook.url, all_query=True)
    if webhook.signature == "standard-webhooks":
        values.append(webhook.secret.get_secret_value().removeprefix("whsec_"))
    return values


def _cut(text: str) -> str:
    return text[:ERROR_TEXT_LIMIT]


def sample_body(webhook: str, delivery_id: str, now: datetime) -> bytes:
    """The body of a `logd webhooks test` delivery: one made-up failure."""
    entry: dict[str, Any] = {
        "id": "logd-test:sample-1",
        "source": "logd-test",
        "provider": "logd-test",
        "native_id": "sample-1",
        "timestamp": now.astimezone(UTC).isoformat(timespec="microseconds"),
        "status": "failure",
        "message": "logd webhook test: a sample failure",
        "error": "this is a test delivery from `logd webhooks test`",
        "entity_type": None,
        "entity_id": None,
        "raw": {"test": True},
        "details": None,
    }
    return encode_body(delivery_id, webhook, "logd-test", "logd-test", [entry])


def send_test(
    webhook: WebhookConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = _utcnow,
) -> Outcome:
    """Send one signed sample delivery to `webhook` now (not queued); what came of it."""
    now = clock()
    delivery_id = new_delivery_id()
    body = sample_body(webhook.name, delivery_id, now)
    redact.register(*webhook_secrets(webhook))
    client = _WebhookClient(webhook.timeout, transport)
    with client:
        status, error, _ = _post(client, webhook, delivery_id, body, now)
    ok = status is not None and 200 <= status < 300
    return Outcome(delivery_id, webhook.name, "delivered" if ok else "dead", status, error)
