"""logd provider plugin for FleetIT integration logs (`GET /v2/integrations/logs/`)."""

from collections.abc import Callable
from typing import Any

from logd import hookimpl

from .options import FleetITOptions
from .provider import FleetIT
from .simulator import FleetITSimulator

__all__ = ["FleetIT", "FleetITOptions", "FleetITSimulator"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `fleetit` provider."""
    register(FleetIT)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the FleetIT API simulator."""
    register(FleetITSimulator)
