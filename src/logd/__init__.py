"""logd: integration logs from vendor APIs in one SQLite file, with search and failure alerts.

The public contract for provider plugins is re-exported here: the hook marker, the provider
base classes, the auth helpers, the entry model and the error types. Names load on first use,
so that `logd query` never imports the HTTP or plugin machinery it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .__about__ import __version__

if TYPE_CHECKING:
    from .auth import Auth as Auth
    from .auth import BearerToken as BearerToken
    from .auth import LoginSession as LoginSession
    from .auth import Token as Token
    from .config import Duration as Duration
    from .config import Secret as Secret
    from .entries import (
        Batch as Batch,
    )
    from .entries import (
        Entry as Entry,
    )
    from .entries import (
        Invalid as Invalid,
    )
    from .entries import (
        InvalidEntry as InvalidEntry,
    )
    from .entries import (
        Status as Status,
    )
    from .entries import (
        cap_watermark as cap_watermark,
    )
    from .entries import (
        map_record as map_record,
    )
    from .entries import (
        map_records as map_records,
    )
    from .entries import (
        native_id_of as native_id_of,
    )
    from .entries import (
        parse_timestamp as parse_timestamp,
    )
    from .entries import (
        searchable_text as searchable_text,
    )
    from .errors import (
        AuthError as AuthError,
    )
    from .errors import (
        ConfigError as ConfigError,
    )
    from .errors import (
        HTTPStatusError as HTTPStatusError,
    )
    from .errors import (
        LogdError as LogdError,
    )
    from .errors import (
        ProtocolError as ProtocolError,
    )
    from .errors import (
        SourceError as SourceError,
    )
    from .errors import (
        TransportError as TransportError,
    )
    from .hookspecs import hookimpl as hookimpl
    from .http import SourceClient as SourceClient
    from .provider import (
        PollContext as PollContext,
    )
    from .provider import (
        Provider as Provider,
    )
    from .provider import (
        ProviderOptions as ProviderOptions,
    )
    from .simulator import (
        SimRequest as SimRequest,
    )
    from .simulator import (
        SimResponse as SimResponse,
    )
    from .simulator import (
        Simulator as Simulator,
    )

_WHERE = {
    "Auth": "auth",
    "BearerToken": "auth",
    "LoginSession": "auth",
    "Token": "auth",
    "Duration": "config",
    "Secret": "config",
    "Batch": "entries",
    "Entry": "entries",
    "Invalid": "entries",
    "InvalidEntry": "entries",
    "cap_watermark": "entries",
    "map_record": "entries",
    "map_records": "entries",
    "native_id_of": "entries",
    "Status": "entries",
    "parse_timestamp": "entries",
    "searchable_text": "entries",
    "AuthError": "errors",
    "ConfigError": "errors",
    "HTTPStatusError": "errors",
    "LogdError": "errors",
    "ProtocolError": "errors",
    "SourceError": "errors",
    "TransportError": "errors",
    "hookimpl": "hookspecs",
    "SourceClient": "http",
    "PollContext": "provider",
    "Provider": "provider",
    "ProviderOptions": "provider",
    "SimRequest": "simulator",
    "SimResponse": "simulator",
    "Simulator": "simulator",
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
    "searchable_text",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'logd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
