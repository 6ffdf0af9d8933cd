"""Serve a simulator from its own process with uvicorn, as the benchmark's vendor API.

In-process mocks would hide the cost of HTTP; here every request crosses a real socket to a
real server in another process, and that process's CPU is not logd's.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from logd.plugin.simulator import Simulator

Factory = Callable[..., Simulator]


def _serve(factory: Factory, name: str, kwargs: dict[str, Any], conn: Connection) -> None:
    sim = factory(**kwargs)
    sim.serve(ready=lambda: conn.send(sim.demo_source(name)))


@contextmanager
def served(factory: Factory, name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Run `factory(**kwargs)` under uvicorn in a child process; yield its `[[sources]]` table.

    `factory` must be importable by name (a class or a module-level function): the child is
    spawned, not forked, so it starts clean of this process's threads.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(factory, name, kwargs, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(300):
            raise RuntimeError(f"simulator {name} did not start")
        source: dict[str, Any] = parent.recv()
        yield source
    finally:
        proc.terminate()
        proc.join(10)
