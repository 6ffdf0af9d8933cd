"""The whole-request deadline both HTTP clients share (`logd.deadline`), over real sockets.

These fail if an httpx or httpcore upgrade stops the transport from using our network
backend (it reaches into httpx's private `_pool`): a request would then run unbounded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from logd.errors import TransportError
from logd.plugin.deadline import Deadline, transport
from logd.plugin.http import RetryPolicy, SourceClient


class _Silent:
    """A server on 127.0.0.1 that reads a request and never answers (until closed)."""

    def __init__(self, head: bytes = b"", gap: float = 0.0) -> None:
        self.head, self.gap = head, gap
        self.asked = threading.Event()
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.asked.set()
                for byte in self.head:  # headers a byte at a time, each well within a read
                    if self.stop.wait(self.gap):
                        return
                    conn.sendall(bytes([byte]))
                self.stop.wait()
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[_Silent]:
    server = _Silent()
    yield server
    server.close()


def test_a_request_past_its_deadline_does_not_even_connect(silent: _Silent) -> None:
    deadline = Deadline(expired="out of time")
    client = httpx.Client(transport=transport(deadline))
    with client, deadline.until(time.monotonic() - 1), pytest.raises(httpx.ConnectTimeout) as info:
        client.get(silent.url)
    assert str(info.value) == "out of time"
    assert not silent.asked.is_set()


def test_without_a_deadline_a_request_keeps_httpx_timeouts(silent: _Silent) -> None:
    deadline = Deadline()
    client = httpx.Client(transport=transport(deadline), timeout=0.2)
    with client, pytest.raises(httpx.ReadTimeout):
        client.get(silent.url)
    assert silent.asked.is_set()


def test_abort_ends_a_read_blocked_in_another_thread(silent: _Silent) -> None:
    deadline = Deadline(closing="closing now")
    raised: list[BaseException] = []

    def ask() -> None:
        with httpx.Client(transport=transport(deadline), timeout=60) as client:
            try:
                client.get(silent.url)
            except httpx.HTTPError as exc:
                raised.append(exc)

    worker = threading.Thread(target=ask)
    worker.start()
    assert silent.asked.wait(10)
    deadline.abort()
    worker.join(10)
    assert not worker.is_alive(), "abort did not end the read"
    assert len(raised) == 1 and isinstance(raised[0], httpx.TransportError)
    client = httpx.Client(transport=transport(deadline))  # and every attempt after
    with client, pytest.raises(httpx.ConnectTimeout, match="closing now"):
        client.get(silent.url)


def test_a_source_request_whose_headers_never_end_stops_at_the_timeout() -> None:
    # 4,000 header bytes at 20 a second would take over 3 minutes; each byte comes well
    # within a read timeout, and no body arrives for a check between chunks to catch.
    server = _Silent(head=b"HTTP/1.1 200 OK\r\nX-Pad: " + b"x" * 4000, gap=0.05)
    client = SourceClient(
        "src", server.url, timeout=0.5, retry=RetryPolicy(attempts=1), sleep=lambda _: None
    )
    raised: list[BaseException] = []

    def ask() -> None:
        try:
            client.get_json("/slow")
        except TransportError as exc:
            raised.append(exc)

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        worker.join(20)
        assert not worker.is_alive(), "the request was not bounded by the source's timeout"
    finally:
        server.close()
        worker.join(10)
    assert [str(e) for e in raised] == [
        f"GET {server.url}/slow failed after 1 attempts: "
        "no complete answer within the source's timeout (0.5s)"
    ]
