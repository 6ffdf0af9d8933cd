"""logd provider plugin for Pegasus Gateway changelogs (`GET /changelogs`) and modifications."""

from collections.abc import Callable
from typing import Any

from logd import hookimpl

from .options import Modification, PegasusOptions
from .provider import Pegasus
from .simulator import PegasusSimulator

__all__ = ["Modification", "Pegasus", "PegasusOptions", "PegasusSimulator"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `pegasus` provider."""
    register(Pegasus)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the Pegasus Gateway API simulator."""
    register(PegasusSimulator)
