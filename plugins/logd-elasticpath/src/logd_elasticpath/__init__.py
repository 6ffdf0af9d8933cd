"""logd provider plugin for Elastic Path integration logs (`GET /v2/integrations/logs`)."""

from collections.abc import Callable
from typing import Any

from logd.plugin.hookspecs import hookimpl

from .options import ElasticPathOptions
from .provider import ElasticPath
from .simulator import ElasticPathSimulator

__all__ = ["ElasticPath", "ElasticPathOptions", "ElasticPathSimulator"]


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the `elasticpath` provider."""
    register(ElasticPath)


@hookimpl
def register_simulators(register: Callable[[Any], None]) -> None:
    """Register the Elastic Path API simulator."""
    register(ElasticPathSimulator)
