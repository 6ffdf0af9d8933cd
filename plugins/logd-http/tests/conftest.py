"""A scripted API for the `http` provider's tests: each test says how it answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logd.plugin.simulator import SimRequest, SimResponse, Simulator

Route = Callable[[SimRequest], SimResponse]


class ScriptedAPI(Simulator):
    """Answers every request with `route(request)`; records what it saw."""

    provider = "http-test"

    def __init__(self) -> None:
        super().__init__()
        self.route: Route = lambda request: SimResponse.json({"data": []})

    def handle(self, request: SimRequest) -> SimResponse:
        """Whatever the test scripted."""
        return self.route(request)

    def source(self, **keys: Any) -> dict[str, Any]:
        """An `http` source on this API: records `data[]` with `id` and ISO `at`, plus `keys`."""
        return {
            "name": "api",
            "provider": "http",
            "base_url": self.base_url,
            "request": {"path": "/logs"},
            "records": {"path": "data", "id": "id", "timestamp": "at", "message": "msg"},
            **keys,
        }


@pytest.fixture
def api() -> Iterator[ScriptedAPI]:
    with ScriptedAPI() as sim:
        yield sim


@pytest.fixture
def other() -> Iterator[ScriptedAPI]:
    """Another origin (another port), which must never see a credential."""
    with ScriptedAPI() as sim:
        yield sim
