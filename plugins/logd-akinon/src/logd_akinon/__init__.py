"""logd provider plugin for Akinon Integrator flow logs (`/logs`, `/logs/download`)."""

from collections.abc import Callable
from typing import Any

from logd import hookimpl

from .options import AkinonOptions
from .provider import Akinon
from .simulator import AkinonSimulator

__all__ = ["Akinon", "AkinonOptions", "AkinonSimulator"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `akinon` provider."""
    register(Akinon)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the Akinon Integrator simulator."""
    register(AkinonSimulator)
