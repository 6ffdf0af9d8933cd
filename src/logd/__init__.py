"""logd: integration logs from vendor APIs in one SQLite file, with search and failure alerts.

The public contract for provider plugins is re-exported here: the hook marker, the provider
base classes, the auth helpers, the entry model and the error types. Names load on first use,
so that `logd query` never imports the HTTP or plugin machinery it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from logd.__about__ import __version__

if TYPE_CHECKING:
    from logd.config.settings import Duration as Duration
    from logd.config.settings import Secret as Secret
    from logd.errors import (
        AuthError as AuthError,
    )
    from logd.errors import (
        ConfigError as ConfigError,
    )
    from logd.errors import (
        HTTPStatusError as HTTPStatusError,
    )
    from logd.errors import (
        LogdError as LogdError,
    )
    from logd.errors import (
        ProtocolError as ProtocolError,
    )
    from logd.errors import (
        SourceError as SourceError,
    )
    from logd.errors import (
        TransportError as TransportError,
    )
    from logd.plugin.auth import Auth as Auth
    from logd.plugin.auth import BearerToken as BearerToken
    from logd.plugin.auth import LoginSession as LoginSession
    from logd.plugin.auth import Token as Token
    from logd.plugin.entries import (
        Batch as Batch,
    )
    from logd.plugin.entries import (
        Entry as Entry,
    )
    from logd.plugin.entries import (
        Invalid as Invalid,
    )
    from logd.plugin.entries import (
        InvalidEntry as InvalidEntry,
    )
    from logd.plugin.entries import (
        Status as Status,
    )
    from logd.plugin.entries import (
        cap_watermark as cap_watermark,
    )
    from logd.plugin.entries import (
        map_record as map_record,
    )
    from logd.plugin.entries import (
        map_records as map_records,
    )
    from logd.plugin.entries import (
        native_id_of as native_id_of,
    )
    from logd.plugin.entries import (
        parse_timestamp as parse_timestamp,
    )
    from logd.plugin.hookspecs import hookimpl as hookimpl
    from logd.plugin.http import SourceClient as SourceClient
    from logd.plugin.provider import (
        PollContext as PollContext,
    )
    from logd.plugin.provider import (
        Provider as Provider,
    )
    from logd.plugin.provider import (
        ProviderOptions as ProviderOptions,
    )
    from logd.plugin.simulator import (
        SimRequest as SimRequest,
    )
    from logd.plugin.simulator import (
        SimResponse as SimResponse,
    )
    from logd.plugin.simulator import (
        Simulator as Simulator,
    )

_WHERE = {
    "Auth": "plugin.auth",
    "BearerToken": "plugin.auth",
    "LoginSession": "plugin.auth",
    "Token": "plugin.auth",
    "Duration": "config.settings",
    "Secret": "config.settings",
    "Batch": "plugin.entries",
    "Entry": "plugin.entries",
    "Invalid": "plugin.entries",
    "InvalidEntry": "plugin.entries",
    "cap_watermark": "plugin.entries",
    "map_record": "plugin.entries",
    "map_records": "plugin.entries",
    "native_id_of": "plugin.entries",
    "Status": "plugin.entries",
    "parse_timestamp": "plugin.entries",
    "AuthError": "errors",
    "ConfigError": "errors",
    "HTTPStatusError": "errors",
    "LogdError": "errors",
    "ProtocolError": "errors",
    "SourceError": "errors",
    "TransportError": "errors",
    "hookimpl": "plugin.hookspecs",
    "SourceClient": "plugin.http",
    "PollContext": "plugin.provider",
    "Provider": "plugin.provider",
    "ProviderOptions": "plugin.provider",
    "SimRequest": "plugin.simulator",
    "SimResponse": "plugin.simulator",
    "Simulator": "plugin.simulator",
}

__all__ = [
    "Auth",
    "AuthError",
    "Batch",
    "BearerToken",
    "ConfigError",
    "Duration",
    "Entry",
    "HTTPStatusError",
    "Invalid",
    "InvalidEntry",
    "LogdError",
    "LoginSession",
    "PollContext",
    "ProtocolError",
    "Provider",
    "ProviderOptions",
    "Secret",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SourceClient",
    "SourceError",
    "Status",
    "Token",
    "TransportError",
    "__version__",
    "cap_watermark",
    "hookimpl",
    "map_record",
    "map_records",
    "native_id_of",
    "parse_timestamp",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'logd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
