"""logd provider plugin `http`: any JSON integration-log API, described in TOML."""

from collections.abc import Callable
from typing import Any

from logd.plugin.hookspecs import hookimpl

from .options import HTTPOptions
from .provider import HTTPProvider
from .simulator import EventsSimulator

__all__ = ["EventsSimulator", "HTTPOptions", "HTTPProvider"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `http` provider."""
    register(HTTPProvider)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the example events API simulator."""
    register(EventsSimulator)
