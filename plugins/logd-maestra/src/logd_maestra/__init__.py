"""logd provider plugin for the Maestra operation log export (`POST /v3/operations/sync`)."""

from collections.abc import Callable
from typing import Any

from logd import hookimpl

from .options import MaestraOptions
from .provider import Maestra
from .simulator import MaestraSimulator

__all__ = ["Maestra", "MaestraOptions", "MaestraSimulator"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `maestra` provider."""
    register(Maestra)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the Maestra API simulator (its file host starts and stops with it)."""
    register(MaestraSimulator)
