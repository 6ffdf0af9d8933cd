"""Every error logd raises on purpose.

The CLI turns each of these into one line on stderr (with a hint where one helps) and an exit
code; anything else that escapes is a bug and keeps its traceback.

    LogdError
    ├── ConfigError            the config file or a command-line option is wrong (exit 2)
    ├── PluginError            a plugin cannot be loaded or clashes with another (exit 2)
    ├── QueryError             a query cannot run: bad FTS syntax, bad time filter (exit 2)
    ├── StoreError             the database cannot be opened or is not a logd store
    └── SourceError            one source's poll failed; the others go on (exit 1)
        ├── HTTPStatusError    the vendor answered with an error status (kept: its own text)
        ├── TransportError     no answer: connection refused, timeout, TLS failure
        ├── AuthError          the vendor refused the credentials, after one fresh login
        └── ProtocolError      an answer logd cannot read: invalid JSON, an unexpected shape

Providers raise `SourceError` subclasses; the engine adds the source's name when it records
one, so a provider's message says what went wrong, not where.
"""

from __future__ import annotations


class LogdError(Exception):
    """Base of every error logd raises deliberately."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(LogdError):
    """The configuration (file, environment or options) is invalid."""

    exit_code = 2


class PluginError(LogdError):
    """A plugin cannot be used: two providers share a name, or a required one is missing."""

    exit_code = 2


class QueryError(LogdError):
    """A query cannot be run as written."""

    exit_code = 2


class StoreError(LogdError):
    """The store cannot be opened or used."""


class SourceError(LogdError):
    """A poll of one source failed."""


class HTTPStatusError(SourceError):
    """The vendor answered with an error status; `vendor_text` is what it said."""

    def __init__(self, message: str, *, status_code: int, url: str, vendor_text: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url
        self.vendor_text = vendor_text


class TransportError(SourceError):
    """The request got no HTTP answer (connection refused, timeout, TLS)."""


class AuthError(SourceError):
    """The vendor refused the credentials, even after logging in again."""


class ProtocolError(SourceError):
    """The vendor's answer cannot be read: invalid JSON, a missing field, a wrong type."""
