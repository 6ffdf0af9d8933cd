"""logd's own sink kinds, registered as a default plugin the way any plugin registers one.

Kept free of heavy imports: the plugin manager registers this module whenever it starts, and
the webhook sink (httpx, signing) is imported only when its kind is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from logd.delivery.sinks import Follower, SinkKind
from logd.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    import httpx


@hookimpl
def register_sinks(register: Callable[[SinkKind], None]) -> None:
    """The `webhook` kind (`[[webhooks]]` tables: new failures signed and POSTed) and the
    `otlp` kind (`[[exports]]` tables: every stored entry sent to an OpenTelemetry collector)."""
    from logd.delivery.sinks.webhook import WEBHOOK

    register(WEBHOOK)
    register(
        SinkKind(
            name="otlp",
            configs=lambda settings: [e for e in settings.exports if e.kind == "otlp"],
            follower=_otlp_follower,
        )
    )


def _otlp_follower(
    config: Any, store: Any, *, holder: str, transport: httpx.BaseTransport | None = None
) -> Follower:
    from logd.delivery.sinks.otlp import OtlpSink

    return OtlpSink(config, store, leases=store, holder=holder, transport=transport)
