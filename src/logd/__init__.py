"""logd: integration logs from vendor APIs in one SQLite file, with search and failure alerts.

The public contract for provider plugins is re-exported here: the hook marker, the provider
base classes, the entry model and the error types.
"""

from .__about__ import __version__
from .config import Duration, Secret
from .entries import Batch, Entry, Status, parse_timestamp, searchable_text
from .errors import (
    AuthError,
    ConfigError,
    HTTPStatusError,
    LogdError,
    ProtocolError,
    SourceError,
    TransportError,
)
from .hookspecs import hookimpl
from .http import SourceClient
from .provider import PollContext, Provider, ProviderOptions
from .simulator import SimRequest, SimResponse, Simulator

__all__ = [
    "AuthError",
    "Batch",
    "ConfigError",
    "Duration",
    "Entry",
    "HTTPStatusError",
    "LogdError",
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
    "TransportError",
    "__version__",
    "hookimpl",
    "parse_timestamp",
    "searchable_text",
]
