"""A base for local simulators of vendor APIs: a real HTTP server on 127.0.0.1.

Each provider plugin ships a `Simulator` subclass that behaves like its vendor's API, quirks
included, so that tests, `logd demo` and plugin authors exercise the real client code over a
real socket. The base gives every simulator the same switches::

    sim = FleetITSimulator()
    base_url = sim.start()                     # ephemeral port on 127.0.0.1
    sim.fail_next(429, headers={"Retry-After": "1"})
    sim.fail_next(500)                         # the next request answers 500, once
    sim.fail_next(200, body=b"{not json")      # invalid JSON, once
    sim.latency = 0.2                          # seconds added to every answer
    sim.requests                               # every request seen, for assertions
    sim.stop()

The same simulator is also an ASGI application (`sim.asgi`), so a benchmark or a plugin
author can serve it from a production HTTP server in its own process::

    uvicorn.run(FleetITSimulator(records=100_000).asgi, port=8001)
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import orjson


@dataclass
class SimRequest:
    """One request as the simulator saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """The body decoded as an HTML form."""
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class SimResponse:
    """What the simulator answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: When set, the body is sent from these chunks as they are produced (chunked encoding),
    #: so a simulator can serve a file far larger than it would want to hold in memory.
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> SimResponse:
        """A JSON answer."""
        try:
            # Compact UTF-8, as Django REST framework and most vendor APIs render JSON, and
            # the simulator's share of a benchmark's CPU: a 100-record page costs orjson a
            # fifth of what json.dumps takes.
            body = orjson.dumps(data)
        except TypeError:  # integers past 64 bits: the stdlib writes them exactly
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, text: str, status: int = 200) -> SimResponse:
        """A plain-text answer."""
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


@dataclass
class _Fault:
    response: SimResponse
    times: int
    path: str | None


class Simulator:
    """Subclass and implement `handle`; register the class with `register_simulators`."""

    #: The provider name this simulates.
    provider: ClassVar[str]

    def __init__(self) -> None:
        self.requests: list[SimRequest] = []
        self.latency = 0.0
        self.lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    # -- to implement -----------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one request like the vendor would."""
        raise NotImplementedError

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table that points a source named `name` at this simulator."""
        raise NotImplementedError

    def tick(self) -> None:
        """Produce a few new records, as the live API would between polls (for the demo)."""

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL the simulator listens on (after `start`, or inside `serve`)."""
        if self._server is not None:
            host, port = self._server.server_address[:2]
            return f"http://{host!s}:{port}"
        if self._address is not None:
            return f"http://{self._address[0]}:{self._address[1]}"
        raise RuntimeError("simulator not started")

    def companions(self) -> list[Simulator]:
        """Other origins this API hands out URLs to (a file host), served alongside it."""
        return []

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, ready: Callable[[], None] | None = None
    ) -> None:
        """Serve this simulator and its companions with uvicorn until interrupted (blocking).

        For a process of its own, so that HTTP costs are a real server's: `start` is the
        lighter in-process server tests use. `ready` runs once every socket listens, when
        `base_url` is known.
        """
        import uvicorn  # only this path needs it: tests and the demo use the threaded server

        sims = [self, *self.companions()]
        sockets = []
        for i, sim in enumerate(sims):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Answers go out as a head and a body write: without this each waits ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port if i == 0 else 0))
            sim._address = sock.getsockname()[:2]
            sockets.append(sock)
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    sim.asgi,
                    interface="asgi3",
                    log_level="warning",
                    access_log=False,
                    lifespan="off",
                )
            )
            for sim in sims
        ]

        async def main() -> None:
            tasks = [
                asyncio.create_task(s.serve(sockets=[k]))
                for s, k in zip(servers, sockets, strict=True)
            ]
            while not all(s.started for s in servers):
                await asyncio.sleep(0.01)
            if ready is not None:
                ready()
            await asyncio.gather(*tasks)

        asyncio.run(main())

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0 = any free port) in a background thread; return the URL."""
        handler = _handler_for(self)
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05) if self._server else None,
            name=f"sim-{self.provider}",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve this simulator as an ASGI application (HTTP only)."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = SimRequest(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True),
            headers=headers,
            body=body,
        )
        try:
            # Off the event loop only when the answer may block (simulated latency).
            if self.latency:
                response = await asyncio.to_thread(self._dispatch, request)
            else:
                response = self._dispatch(request)
        except Exception as exc:  # a simulator bug should show, not hang the client
            response = SimResponse.text(f"simulator error: {exc!r}", 500)
        out = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        if response.chunks is None:
            out.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        if response.chunks is None:
            await send({"type": "http.response.body", "body": response.body})
            return
        chunks = iter(response.chunks)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    # -- fault switches ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` requests (to paths starting with `path`) with this instead."""
        if body is None:
            body = json.dumps({"detail": f"simulated HTTP {status}"})
        raw = body.encode() if isinstance(body, str) else body
        response = SimResponse(status, raw, {"Content-Type": "application/json", **(headers or {})})
        with self.lock:
            self._faults.append(_Fault(response, times, path))

    def requests_to(self, path: str, method: str | None = None) -> list[SimRequest]:
        """Requests seen whose path starts with `path`."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path) and (method is None or r.method == method)
            ]

    def _dispatch(self, request: SimRequest) -> SimResponse:
        with self.lock:
            self.requests.append(request)
            for fault in self._faults:
                if fault.path is None or request.path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault.response
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            return self.handle(request)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a killed sync, a timeout) is not a simulator bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, each answer waits ~40 ms.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = SimRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            try:
                response = sim._dispatch(request)
            except Exception as exc:  # a simulator bug should show, not hang the client
                response = SimResponse.text(f"simulator error: {exc!r}", 500)
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if response.chunks is None:
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in response.chunks:
                if chunk:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
