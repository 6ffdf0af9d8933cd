"""logd's own sink kinds, registered as a default plugin the way any plugin registers one.

Kept free of heavy imports: the plugin manager registers this module whenever it starts, and
the webhook sink (httpx, signing) is imported only when its kind is asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from logd.delivery.sinks import SinkKind
from logd.plugin.hookspecs import hookimpl


@hookimpl
def register_sinks(register: Callable[[SinkKind], None]) -> None:
    """The `webhook` kind: `[[webhooks]]` tables, new failures signed and POSTed."""
    from logd.delivery.sinks.webhook import WEBHOOK

    register(WEBHOOK)
