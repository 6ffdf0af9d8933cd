"""A local HTTP server that records what it receives: the base of logd's test receivers
(webhook deliveries, OTLP exports), for tests, the demo and debugging.

    with SomeReceiver() as rx:          # serving on 127.0.0.1, a free port
        ...                             # point logd at rx.base_url
        rx.wait_for(3)                  # the first 3 requests, or what came within 5 s
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Generic, Self, TypeVar

R = TypeVar("R")


class LocalServer(Generic[R]):
    """Serves `handler` on `host:port` in a background thread; `received` holds what the
    handler recorded (`record`), in arrival order."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.received: list[R] = []
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        # A short poll interval so that close() (and every test using a receiver) is quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """`http://host:port`, where it listens."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Self:
        """Start serving in a background thread (what `with` does)."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._thread.is_alive():  # shutdown() waits forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()

    def record(self, item: R) -> None:
        """Keep what a request brought (called by the handler) and wake `wait_for`."""
        with self._lock:
            self.received.append(item)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[R]:
        """Wait until `count` requests have arrived (or the timeout); return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return list(self.received)
