"""Whole-request deadlines for httpx: every socket operation waits at most what is left.

httpx's timeouts bound each socket operation, not a request: it reads its read timeout once
per response phase and applies it to each read, so a server sending a byte a second never
trips a 10 s timeout. httpcore takes a network backend, the one place every connect, read and
write passes through, but httpx offers no way to pass one: `transport()` builds httpx's own
transport and puts a connection pool over our backend in its place (`_pool`, httpx's private
attribute; the drip tests in test_http_faults.py and test_webhooks.py fail if an upgrade
changes it).

    deadline = Deadline(expired="no complete answer within the webhook's timeout")
    client = httpx.Client(transport=transport(deadline))
    with deadline.until(time.monotonic() + 10):
        client.post(...)        # connect, send, headers and body: 10 s in all

A thread's deadline is its own (a client used by two threads bounds each one's request);
`abort()` ends every attempt under way, in any thread, and each one after.
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpcore
import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client shares, made once per process.

    httpx builds one per client by default, and reading the CA bundle into it costs ~20 ms of
    CPU: most of what an idle poll costs, since each poll gets a client of its own.
    """
    return httpx.create_ssl_context()


class Deadline:
    """When the calling thread's request must be over (monotonic seconds, None: no bound), and
    the open connections, so that `abort` can end an attempt blocked in a read at once."""

    def __init__(
        self,
        expired: str = "the request's deadline passed",
        closing: str = "the client is closing",
    ) -> None:
        #: The messages of the httpcore timeout raised once the deadline has passed, and once
        #: `abort` was called.
        self.expired, self.closing = expired, closing
        self.aborted = False
        self._local = threading.local()
        self._streams: set[_DeadlineStream] = set()
        self._lock = threading.Lock()

    @property
    def at(self) -> float | None:
        """The calling thread's deadline, or None."""
        at: float | None = getattr(self._local, "at", None)
        return at

    @at.setter
    def at(self, value: float | None) -> None:
        self._local.at = value

    @contextmanager
    def until(self, at: float) -> Iterator[None]:
        """Bound what the calling thread sends and reads in the block by `at` (monotonic)."""
        self.at = at
        try:
            yield
        finally:
            self.at = None

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """`timeout` cut to what is left of the deadline; raises `error` once it has passed."""
        if self.aborted:
            raise error(self.closing)
        at = self.at
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise error(self.expired)
        return left if timeout is None else min(timeout, left)

    def abort(self) -> None:
        """End every attempt now, and each one after: the client's owner is closing."""
        self.aborted = True
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                with suppress(OSError):  # wakes a read blocked on it, in any thread
                    sock.shutdown(socket.SHUT_RDWR)

    def _opened(self, stream: _DeadlineStream) -> None:
        with self._lock:
            self._streams.add(stream)

    def _closed(self, stream: _DeadlineStream) -> None:
        with self._lock:
            self._streams.discard(stream)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read and write waits at most until the request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline
        deadline._opened(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, waiting no longer than the deadline allows."""
        return self._stream.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write, waiting no longer than the deadline allows."""
        self._stream.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the socket."""
        self._deadline._closed(self)
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The TLS handshake, bounded like a read."""
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        stream = self._stream.start_tls(ssl_context, server_hostname, left)
        self._deadline._closed(self)  # the TLS stream takes the socket over
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        """What the wrapped stream knows (the socket, the TLS object)."""
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    """httpcore's sockets, bounded by the deadline of the request the calling thread runs."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect within the deadline; the stream keeps to it."""
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        stream = super().connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)


def transport(deadline: Deadline) -> httpx.HTTPTransport:
    """httpx's transport (verifying TLS, default limits) over sockets that keep to `deadline`."""
    made = httpx.HTTPTransport(verify=tls_context())
    limits = httpx.Limits()
    made._pool = httpcore.ConnectionPool(
        ssl_context=tls_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_DeadlineBackend(deadline),
    )
    return made
