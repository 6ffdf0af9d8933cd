"""Sinks: the systems logd delivers entries to, one module per kind.

A sink kind (`SinkKind`) is registered by a plugin's `register_sinks` hook, keyed by its name;
logd's own `webhook` kind is registered the same way, by a default plugin
(`logd.delivery.sinks.builtin`). Each table of a kind in the config becomes one `Sink`, named
by the table's `name`, with a lane of its own in the outbox:

    kind.batch_hook(configs, clock=clock)   # queues deliveries inside a batch's transaction
    sink = kind.build(config, transport=None, clock=clock)
    sink.send(delivery)                     # one attempt: a `Sent`
    sink.close()                            # ends an attempt under way, drops connections

What a send came to is the sink's to say (`Sent.result`); when to try again, when to give up
and what the outbox records is the deliverer's (`logd.delivery.deliverer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import threading

    import httpx

    from logd.config.settings import Settings
    from logd.store.interface import BatchHook, Delivery

__all__ = ["Clock", "Follower", "Sent", "Sink", "SinkKind"]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Sent:
    """What one attempt at one delivery came to, as the sink saw it.

    `delivered`: the receiver has it. `retry`: try again later (a timeout, a network error,
    a 408, 429 or 5xx; `retry_after` is the receiver's Retry-After in seconds). `rejected`:
    the receiver refused it for good; trying again would get the same answer.
    """

    result: Literal["delivered", "retry", "rejected"]
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Sink(Protocol):
    """One configured destination: the lane of the outbox named `name`."""

    #: The config table's `name`: the outbox lane, the name in logs, metrics and status.
    name: str
    #: The kind it was built by (`webhook`, …).
    kind: str
    #: Seconds after a delivery was queued that it is retried for; then it is dead.
    retry_for: float
    #: Seconds one attempt takes at most (a claim on deliveries outlives it).
    timeout: float

    def send(self, delivery: Delivery) -> Sent:
        """Attempt `delivery` once, within the sink's own time limit; never raises for what
        the receiver or the network did (that is a `Sent`)."""
        ...

    def close(self) -> None:
        """End an attempt under way at once (its `Sent` is not counted) and release
        connections; safe from any thread, and the sink sends nothing afterwards."""
        ...


class SinkFactory(Protocol):
    """Builds a sink from one config table of its kind."""

    def __call__(
        self, config: Any, *, transport: httpx.BaseTransport | None = None, clock: Clock
    ) -> Sink: ...


class BatchHookFactory(Protocol):
    """Builds the hook that queues deliveries to a kind's sinks inside a batch's transaction."""

    def __call__(
        self,
        configs: Sequence[Any],
        *,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
    ) -> BatchHook: ...


class Follower(Protocol):
    """A sink that follows the change sequence instead of the outbox (an export): it sends
    every stored entry and change after its position, which it moves only once the receiver
    has them. Several daemons: the holder of the lease `sink:<name>` sends, the others wait."""

    @property
    def name(self) -> str:
        """The config table's `name`."""
        ...

    def export_due(self, stop: threading.Event | None = None) -> Any:
        """One bounded round: what is due, or up to the first answer that says wait."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Rounds until `stop` is set or `close` is called, waiting between them."""
        ...

    def kick(self) -> None:
        """Entries were stored: end the wait between rounds now."""
        ...

    def close(self) -> None:
        """End a request under way; `run` returns soon after."""
        ...


class FollowerFactory(Protocol):
    """Builds a follower from one config table of its kind, reading `store`'s change
    sequence under leases held as `holder`."""

    def __call__(
        self,
        config: Any,
        store: Any,
        *,
        holder: str,
        transport: httpx.BaseTransport | None = None,
    ) -> Follower: ...


@dataclass(frozen=True)
class SinkKind:
    """A kind of sink a plugin registers (`register_sinks`): how its tables are found in the
    settings, how a sink is built from one, and how deliveries to them are queued."""

    #: The kind's name, unique among registered kinds (`webhook`, `otlp`).
    name: str
    #: The config tables of this kind in the settings (each has a unique `name`).
    configs: Callable[[Settings], Sequence[Any]]
    #: Builds an outbox sink (deliveries queued by `batch_hook`); None for a follower kind.
    build: SinkFactory | None = None
    #: None for a kind that queues nothing (one that follows the change sequence instead).
    batch_hook: BatchHookFactory | None = None
    #: Builds a follower of the change sequence (an export); None for an outbox kind.
    follower: FollowerFactory | None = None
