"""The webhook sink: new failures, signed (FleetIT or Standard Webhooks), POSTed as JSON.

    hook = outbox_hook(settings.webhooks, clock=clock)   # queues inside the batch transaction
    sink = WebhookSink(settings.webhooks[0])             # one `[[webhooks]]` table
    sink.send(delivery)                                  # one signed attempt: a `Sent`

What a send comes to: 2xx is delivered; 408, 429, 5xx, network errors and timeouts are
retried (after a 429's or 503's Retry-After at the least); any other status, redirects
included (never followed), is rejected, with the response text kept, every webhook secret
in it masked (`logd.redact`, which masks them in every log line too). Each attempt ends
within the webhook's `timeout`, the whole request and answer included.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from logd import redact
from logd.__about__ import __version__
from logd.delivery.signing import sign
from logd.delivery.sinks import Clock, Sent, SinkKind
from logd.errors import QueryError, StoreError
from logd.plugin.deadline import Deadline
from logd.plugin.deadline import transport as deadline_transport
from logd.plugin.http import redact_url, retry_after_seconds
from logd.store.interface import BatchHook, BatchResult, BatchTransaction, Delivery, NewDelivery
from logd.store.query_language import Node, parse

if TYPE_CHECKING:
    from logd.config.settings import Settings, WebhookConfig

__all__ = [
    "ERROR_TEXT_LIMIT",
    "WEBHOOK",
    "WebhookSink",
    "encode_body",
    "new_delivery_id",
    "outbox_hook",
    "sample_body",
    "send_test",
    "webhook_secrets",
]

log = logging.getLogger("logd.webhooks")

ERROR_TEXT_LIMIT = 4000  # enough of a receiver's error page to act on, not a whole HTML site


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the body -------------------------------------------------------------------------------


def new_delivery_id() -> str:
    """A fresh delivery id; it stays the same on every retry of that delivery."""
    return f"dlv_{uuid.uuid4().hex}"


def encode_body(
    delivery_id: str, webhook: str, source: str, provider: str, entries: Sequence[dict[str, Any]]
) -> bytes:
    """The exact bytes sent and signed: compact, ASCII-only JSON.

    Compact separators and ASCII escapes make FleetIT's verification sample, which re-serialises
    the parsed body with `json.dumps(payload, separators=(',', ':'))`, reproduce these bytes.
    """
    payload = {
        "delivery_id": delivery_id,
        "webhook": webhook,
        "source": source,
        "provider": provider,
        "count": len(entries),
        "entries": list(entries),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- queueing -------------------------------------------------------------------------------


def outbox_hook(
    configs: Sequence[WebhookConfig],
    *,
    clock: Clock = _utcnow,
    on_queued: Callable[[], None] | None = None,
) -> BatchHook:
    """A batch hook that queues one delivery per webhook per source for the batch's new failures.

    Runs inside the batch's transaction (`BatchTransaction`): the entries are already written,
    so `match` is asked of the store as `logd query --fts` asks it, and the bodies carry the
    entries in the query's JSON shape. A backfill batch (`BatchResult.backfill`: the source's
    first poll) queues nothing, except for webhooks with `alert_backfill`. `on_queued` is
    called (still inside the transaction: it should only set a flag) when the batch queued at
    least one delivery.
    """
    webhooks = list(configs)
    # Parsed once: check-config validated each expression with the same parser.
    matches = {w.name: _match_node(w) for w in webhooks if w.match is not None}

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
            node = matches.get(webhook.name)
            if node is not None and keys:
                try:
                    found = tx.matching(node, keys)
                    keys = [k for k in keys if k in found]
                except StoreError as exc:
                    # Not the expression (a checked tree): a store fault. Alert all.
                    log.error(
                        "webhook %s: match failed (%s); sending unfiltered", webhook.name, exc
                    )
            for start in range(0, len(keys), webhook.max_entries):
                chunk = [rows[k] for k in keys[start : start + webhook.max_entries]]
                delivery_id = new_delivery_id()
                body = encode_body(
                    delivery_id,
                    webhook.name,
                    source,
                    chunk[0].provider,
                    [r.as_dict() for r in chunk],
                )
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


def _match_node(webhook: WebhookConfig) -> Node | None:
    """The parsed `match` of the webhook, or None to send every failure."""
    try:
        return parse(webhook.match or "")
    except QueryError as exc:
        # check-config rejects it; should one slip through, alert rather than drop.
        log.error("webhook %s: match is not valid (%s); sending unfiltered", webhook.name, exc)
        return None


# -- sending --------------------------------------------------------------------------------


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


class WebhookSink:
    """One `[[webhooks]]` table as a sink. It keeps its HTTP client (and so its connection)
    from one send to the next; one send at a time (its lane's)."""

    kind = "webhook"

    def __init__(
        self,
        config: WebhookConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.config = config
        self.name = config.name
        self.retry_for = float(config.retry_for)
        self.timeout = float(config.timeout)
        self.transport = transport
        self.clock = clock
        self.secrets = webhook_secrets(config)
        redact.register(*self.secrets)  # httpx's debug lines show the URL, tokens and all
        self._client: _WebhookClient | None = None
        self._lock = threading.Lock()  # held by a send; `close` never waits for it
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, {self.config.host})"

    def send(self, delivery: Delivery) -> Sent:
        """POST `delivery` once, signed at the clock's time now."""
        with self._lock:
            client = self._client
            if client is None:
                client = self._client = _WebhookClient(self.config.timeout, self.transport)
                client.deadline.aborted = self._closed
            try:
                return _post(client, self.config, delivery.delivery_id, delivery.body, self.clock())
            finally:
                if self._closed:
                    self._drop()

    def close(self) -> None:
        """End an attempt under way and close the connection (now, or when the send ends)."""
        self._closed = True
        client = self._client
        if client is not None:
            client.deadline.abort()
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _post(
    client: _WebhookClient, webhook: WebhookConfig, delivery_id: str, body: bytes, now: datetime
) -> Sent:
    """Send one signed attempt and say what came of it."""
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
        return Sent("retry", None, _cut(redact.mask(f"{type(exc).__name__}: {exc}", secrets)))
    status = response.status_code
    if 200 <= status < 300:
        return Sent("delivered", status)
    if 300 <= status < 400:
        location = response.headers.get("location")
        target = httpx.URL(webhook.url).join(location) if location else None
        where = f" to {redact_url(target)}" if target else ""
        # The target may be a signed URL too: its token-long values are credentials.
        hidden = [*secrets, *(redact.url_secrets(str(target)) if target else [])]
        text = redact.mask(f"HTTP {status} redirect{where} not followed", hidden)
        return Sent("rejected", status, f"{text}; configure the final URL")
    # Masked before it is cut: a secret straddling the cut would otherwise leave its prefix.
    text = _cut(redact.mask(" ".join(response.text.split()), secrets)) or response.reason_phrase
    error = f"HTTP {status}: {text}"
    if status in (408, 429) or status >= 500:
        return Sent("retry", status, error, retry_after_seconds(response))
    return Sent("rejected", status, error)


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


# -- `logd webhooks test` -------------------------------------------------------------------


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
) -> tuple[str, Sent]:
    """Send one signed sample delivery to `webhook` now (not queued): its id and what came
    of it."""
    now = clock()
    delivery_id = new_delivery_id()
    body = sample_body(webhook.name, delivery_id, now)
    stamp = now.astimezone(UTC).isoformat(timespec="microseconds")
    sample = Delivery(
        delivery_id, webhook.name, "logd-test", "logd-test", 1, body, "pending", 0, stamp,
        None, None, stamp, stamp,
    )  # fmt: skip
    sink = WebhookSink(webhook, transport=transport, clock=lambda: now)
    try:
        return delivery_id, sink.send(sample)
    finally:
        sink.close()


# -- the kind ---------------------------------------------------------------------------------


def _configs(settings: Settings) -> Sequence[WebhookConfig]:
    return list(settings.webhooks)


def _build(
    config: Any, *, transport: httpx.BaseTransport | None = None, clock: Clock = _utcnow
) -> WebhookSink:
    return WebhookSink(config, transport=transport, clock=clock)


def _hook(
    configs: Sequence[Any], *, clock: Clock, on_queued: Callable[[], None] | None = None
) -> BatchHook:
    return outbox_hook(configs, clock=clock, on_queued=on_queued)


#: The `webhook` sink kind: `[[webhooks]]` tables (`logd.delivery.sinks.builtin` registers it).
WEBHOOK = SinkKind("webhook", configs=_configs, build=_build, batch_hook=_hook)
