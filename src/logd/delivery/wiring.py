"""Deliveries wired up for a command: the one place `logd sync`, `logd run` and `logd webhooks
retry` get the batch hooks that queue deliveries and the deliverer that sends them.

    deliveries = wire_deliveries(settings, store, registry)
    Engine(settings, store, registry, batch_hooks=deliveries.hooks)
    deliveries.deliverer.deliver_due()          # when any sink is configured

Every registered sink kind (`register_sinks`) is asked for its tables in the settings; each
table becomes a sink, and each kind with tables its batch hook.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from logd.delivery.deliverer import Deliverer, Outbox
from logd.delivery.sinks import Clock, Follower, Sink

if TYPE_CHECKING:
    import httpx

    from logd.config.settings import Settings
    from logd.plugin.manager import Registry

__all__ = ["Deliveries", "OutboxStore", "wire_deliveries"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxStore(Outbox, Protocol):
    """The outbox part of `logd.store.interface.Store` the commands use."""

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        """Per source or sink: pending, dead and done delivery counts."""
        ...

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        """Make deliveries due now (the named ones, dead included, else every pending one)."""
        ...


@dataclass
class Deliveries:
    """What a command needs for deliveries: hooks for the engine, a deliverer (None when no
    sink is configured) and the store's outbox."""

    #: For `Engine(batch_hooks=)` / `commit_batch(hooks=)`: `interface.BatchHook`s.
    hooks: list[Any]
    deliverer: Deliverer | None
    outbox: OutboxStore
    sinks: list[Sink] = field(default_factory=list)
    #: Sinks that follow the change sequence (exports), each run by the command.
    followers: list[Follower] = field(default_factory=list)

    def __enter__(self) -> Deliveries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the deliverer (its workers and connections) and the followers."""
        if self.deliverer is not None:
            self.deliverer.close()
        for follower in self.followers:
            follower.close()

    def pending(self) -> dict[str, int]:
        """Pending deliveries per sink."""
        return {k: v.get("pending", 0) for k, v in self.outbox.outbox_counts("sink").items()}


def wire_deliveries(
    settings: Settings,
    store: Any,
    registry: Registry | None = None,
    *,
    on_queued: Callable[[], None] | None = None,
    clock: Clock = _utcnow,
    transport: httpx.BaseTransport | None = None,
    holder: str | None = None,
) -> Deliveries:
    """The batch hooks and the deliverer for every sink configured in `settings`.

    `store` is a `logd.store.interface.Store`. `on_queued` is called inside a batch's
    transaction when it queued a delivery (set a flag; kick the deliverer after the commit).
    `holder` names this process in delivery claims and the leases of followers (the daemon
    passes its id; default: a fresh id per deliverer, host and pid for followers).
    """
    if registry is None:
        from logd.plugin.manager import load_plugins

        registry = load_plugins()
    outbox: OutboxStore = store
    hooks: list[Any] = []
    sinks: list[Sink] = []
    followers: list[Follower] = []
    follower_holder = holder or f"{socket.gethostname()}:{os.getpid()}"
    for kind in registry.sink_kinds().values():
        configs = kind.configs(settings)
        if not configs:
            continue
        if kind.batch_hook is not None:
            hooks.append(kind.batch_hook(configs, clock=clock, on_queued=on_queued))
        if kind.build is not None:
            sinks += [kind.build(c, transport=transport, clock=clock) for c in configs]
        if kind.follower is not None:
            followers += [
                kind.follower(c, store, holder=follower_holder, transport=transport)
                for c in configs
            ]
    deliverer = Deliverer(sinks, outbox, clock=clock, holder=holder) if sinks else None
    return Deliveries(hooks, deliverer, outbox, sinks, followers)
