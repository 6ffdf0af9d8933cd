"""Webhooks as they were called before sinks: `Deliverer(settings, store)`,
`outbox_hook(settings)`, `send_test(webhook)`, on top of the webhook sink
(`logd.delivery.sinks.webhook`) and the deliverer (`logd.delivery.deliverer`). Commands wire
deliveries with `logd.delivery.wiring.wire_deliveries`; this module is for the callers (and
tests) of the old names.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from logd.config.settings import Settings, WebhookConfig
from logd.delivery import deliverer as _deliverer
from logd.delivery.deliverer import DeliveryStats, Outcome
from logd.delivery.sinks import Clock
from logd.delivery.sinks import webhook as _webhook
from logd.delivery.sinks.webhook import ERROR_TEXT_LIMIT, WebhookSink, webhook_secrets
from logd.store.interface import BatchHook

__all__ = [
    "ERROR_TEXT_LIMIT",
    "Deliverer",
    "DeliveryStats",
    "Outcome",
    "outbox_hook",
    "send_test",
    "webhook_secrets",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the old entry points -------------------------------------------------------------------


def outbox_hook(
    settings: Settings,
    *,
    clock: Clock = _utcnow,
    on_queued: Callable[[], None] | None = None,
) -> BatchHook:
    """The webhook sink's batch hook (`sinks.webhook.outbox_hook`) for `settings.webhooks`."""
    return _webhook.outbox_hook(settings.webhooks, clock=clock, on_queued=on_queued)


class Deliverer(_deliverer.Deliverer):
    """The deliverer over `settings.webhooks`' sinks and `store`'s outbox."""

    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
        backoff: float = 30.0,
        max_backoff: float = 3600.0,
        lane_budget: float = 30.0,
    ) -> None:
        super().__init__(
            [WebhookSink(w, transport=transport, clock=clock) for w in settings.webhooks],
            store,
            clock=clock,
            rng=rng,
            backoff=backoff,
            max_backoff=max_backoff,
            lane_budget=lane_budget,
        )
        self.settings = settings


def send_test(
    webhook: WebhookConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = _utcnow,
) -> Outcome:
    """Send one signed sample delivery to `webhook` now (not queued); what came of it."""
    delivery_id, sent = _webhook.send_test(webhook, transport=transport, clock=clock)
    state: Literal["delivered", "dead"] = "delivered" if sent.result == "delivered" else "dead"
    return Outcome(delivery_id, webhook.name, state, sent.status, sent.error)
