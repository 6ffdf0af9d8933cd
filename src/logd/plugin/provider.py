"""What a provider plugin implements, and what it is handed when it polls.

A provider turns one vendor API into `Entry` records::

    class FleetIT(Provider):
        name = "fleetit"
        Options = FleetITOptions          # pydantic model, extra="forbid"

        def poll(self, ctx: PollContext[FleetITOptions]) -> Iterator[Batch]:
            for page in ...:
                yield Batch(entries=[...], cursor={...})

The engine builds the context (an HTTP client bound to the source's `base_url` that already
retries, the validated options, the stored cursor, a logger), commits every batch with its
cursor in one transaction, and records what failed. Providers never open the database, sleep,
retry or schedule.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

from logd import redact
from logd.plugin.entries import Batch

if TYPE_CHECKING:
    from logd.plugin.http import SourceClient


class ProviderOptions(BaseModel):
    """Base for a provider's own `[[sources]]` keys; unknown keys are errors.

    Every provider has a `base_url`; give it a default when the vendor has one production host.
    Use `logd.config.Secret` for credentials so they resolve `{env=…}`/`{file=…}` and never print.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        """An http(s) URL with a host, checked at load time (a subclass's field included)."""
        return check_base_url(value)


def check_base_url(value: str) -> str:
    """`value` when it is an http:// or https:// URL with a host, else a `ValueError`.

    Without this a `base_url` of `127.0.0.1:8080` or `htp://x` passed `check-config` and
    every request then failed on the transport, retried until the attempts ran out.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an http:// or https:// URL with a host "
            "(such as https://api.example.com)"
        )
    return value


OptionsT = TypeVar("OptionsT", bound=ProviderOptions)


@dataclass
class PollContext(Generic[OptionsT]):
    """Everything one poll of one source may use."""

    source: str
    options: OptionsT
    client: SourceClient
    cursor: Mapping[str, Any] | None
    log: logging.Logger
    # Read the clock through this so tests can move time; always aware UTC.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Ask the store whether native ids are already stored (providers that stop paging at
    # the first known record use this); returns the subset that is known.
    known_ids: Callable[[list[str]], set[str]] = field(default=lambda ids: set())
    # Wait this long (polling an asynchronous export, say). Use this, never time.sleep: the
    # daemon makes it return early on shutdown and tests make it instant.
    sleep: Callable[[float], None] = field(default=time.sleep)
    # True once the daemon is shutting down: a provider waiting on the vendor (an export
    # being prepared) stops waiting and raises, leaving its cursor where it was.
    stopping: Callable[[], bool] = field(default=lambda: False)
    #: Values masked as `***` in every error and log line of this poll.
    secrets: list[str] = field(default_factory=list)

    def add_secret(self, value: str) -> None:
        """Mask a credential obtained during the poll (a session token) in errors and logs."""
        if value and value not in self.secrets:
            self.secrets.append(value)
        redact.register(value)  # and in every log line, whoever writes it


class Provider(ABC, Generic[OptionsT]):
    """A source API; subclass it and register the class through `register_providers`.

    The engine makes one instance per source and keeps it between polls, so session state
    such as an access token can live on the instance (in memory only, never in the cursor).
    """

    name: ClassVar[str]
    Options: ClassVar[type[ProviderOptions]]
    #: One line for `logd plugins`.
    description: ClassVar[str] = ""
    #: The vendor's documented request budget ("20/s"), the default of a source's `max_rate`.
    max_rate: ClassVar[str | None] = None

    @abstractmethod
    def poll(self, ctx: PollContext[OptionsT]) -> Iterator[Batch]:
        """Fetch what is new since `ctx.cursor` and yield it in batches, oldest work first.

        Yield a batch as soon as it is complete (a page, a window): the engine commits it with
        its cursor before asking for the next one, so a crash loses at most the batch in hand.
        """

    def secrets(self, options: OptionsT) -> list[str]:
        """Plain values of this source's credentials, so the engine can mask them in messages."""
        values: list[str] = []
        for name in type(options).model_fields:
            value = getattr(options, name)
            if hasattr(value, "get_secret_value"):
                values.append(value.get_secret_value())
        return [v for v in values if v]
