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

Faults in the body of an answer, for reliability tests. Each takes `times` (how many answers
it spoils), `path` (only requests whose path starts with it) and `skip` (let that many
matching requests through first, so that a poll commits some pages before the fault); a
fault that keeps the real answer asks the subclass for it and spoils what goes out:

    sim.drip(after=100, interval=0.5)          # real answer: its Content-Length, 100 bytes,
                                               #   then one byte every 0.5 s
    sim.reset_mid_body(after=50)               # real answer's head and 50 bytes, then a TCP RST
    sim.truncate_body(keep=0.5)                # real answer cut to half (valid HTTP, bad JSON)
    sim.html_error_page()                      # 200 text/html "502 Bad Gateway" page
    sim.wrong_encoding("gzip")                 # real answer labelled gzip, sent plain
    sim.oversized_body(10 * 2**20)             # 200 with a 10 MiB JSON-looking body, streamed
    sim.gzip_bomb(200 * 2**20)                 # 200 with a small gzip file that inflates to
                                               #   200 MiB of one CSV line (a Maestra part)
    sim.storm(429, times=50, retry_after="0")  # a run of one status; without retry_after, 429s
                                               #   carry no Retry-After (also 5xx runs)
    sim.repeat_answer()                        # paging stalls: every page of a listing is its
                                               #   first page again (`offset`, `page`, … ignored)
    sim.skew_clock(timedelta(days=3))          # every ISO 8601 time and epoch-milliseconds
                                               #   string in JSON and CSV answers moved by it
    sim.clear_faults()                         # the vendor recovers: every fault above ends

Faults apply to the simulator they are set on: a companion origin (Maestra's file host) has
its own switches (`sim.files.drip(...)`), except `skew_clock`, which follows companions.
Drip and reset need the threaded server (`start`); under `serve` (uvicorn) such an answer goes
out whole.

The same simulator is also an ASGI application (`sim.asgi`), so a benchmark or a plugin
author can serve it from a production HTTP server in its own process::

    uvicorn.run(FleetITSimulator(records=100_000).asgi, port=8001)
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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
    #: Delivery faults (threaded server): send `drip[0]` bytes, then one byte per `drip[1]`
    #: seconds until the body is out or `abort` is set; or hang up with a TCP reset once
    #: `reset_after` bytes of the body are out.
    drip: tuple[int, float] | None = None
    reset_after: int | None = None
    abort: threading.Event | None = None

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
    #: A fixed answer, or None: the real answer, passed through `spoil`.
    response: SimResponse | None
    times: int
    path: str | None
    skip: int = 0
    spoil: Callable[[SimRequest, SimResponse], SimResponse] | None = None
    #: Requests to paths starting with this (a login) never meet the fault.
    spare: str | None = None

    def matches(self, request: SimRequest) -> bool:
        if self.spare is not None and request.path.startswith(self.spare):
            return False
        return self.path is None or request.path.startswith(self.path)


#: An ISO 8601 date-time (the offset kept verbatim) or a quoted epoch-milliseconds string.
_ISO_TIME = re.compile(
    rb"(?P<iso>\d{4}-\d{2}-\d{2}(?P<sep>[T ])\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    rb'|"(?P<ms>1\d{12})"'
)
#: Query parameters that say which page of a listing is asked for (`repeat_answer`).
PAGING_PARAMS = ("offset", "page", "page[offset]", "pointer", "cursor", "after")
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


class Simulator:
    """Subclass and implement `handle`; register the class with `register_simulators`."""

    #: The provider name this simulates.
    provider: ClassVar[str]

    def __init__(self) -> None:
        self.requests: list[SimRequest] = []
        self.latency = 0.0
        self.lock = threading.RLock()
        self._faults: list[_Fault] = []
        #: Added to every time in an answer (`skew_clock`).
        self.clock_skew = timedelta(0)
        # Set by `clear_faults` and `stop`: drips in progress hang up.
        self._abort = threading.Event()
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

    # -- what the provider contract suite (logd.plugin.contract) asks ---------------------

    #: Path of the vendor's login request when the provider keeps a login session (its
    #: re-login on a 401 is then checked); None for static credentials.
    login_path: ClassVar[str | None] = None

    @classmethod
    def for_contract(cls) -> Self:
        """A simulator with a small data set of a few pages, for the contract suite."""
        return cls()

    def contract_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table the contract suite polls (default: `demo_source`)."""
        return self.demo_source(name)

    def native_ids(self) -> set[str] | None:
        """Native ids of every entry a poll of `contract_source` stores.

        None (not declared): the suite takes what a clean poll stores, so it cannot tell
        a record never fetched.
        """
        return None

    def credential_keys(self) -> tuple[str, ...]:
        """Dotted keys of `contract_source` holding credentials (the suite makes them wrong).

        Empty (the default): every `Secret` in the source's validated options.
        """
        return ()

    def contract_now(self) -> datetime | None:
        """The engine's clock for the suite, when the simulator's data hangs on its own NOW."""
        return None

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
        if self._abort.is_set():  # stopped before: drips from now on run again
            self._abort = threading.Event()
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
        self._abort.set()
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
        skip: int = 0,
        spare: str | None = None,
    ) -> None:
        """Answer the next `times` requests (to paths starting with `path`) with this instead.

        `skip` such requests are let through first; paths starting with `spare` (a login)
        never meet the fault.
        """
        if body is None:
            body = json.dumps({"detail": f"simulated HTTP {status}"})
        raw = body.encode() if isinstance(body, str) else body
        response = SimResponse(status, raw, {"Content-Type": "application/json", **(headers or {})})
        with self.lock:
            self._faults.append(_Fault(response, times, path, skip, spare=spare))

    def _add_fault(
        self,
        response: SimResponse | None,
        spoil: Callable[[SimRequest, SimResponse], SimResponse] | None,
        *,
        times: int,
        path: str | None,
        skip: int,
    ) -> None:
        with self.lock:
            self._faults.append(_Fault(response, times, path, skip, spoil))

    def drip(
        self,
        *,
        after: int = 0,
        interval: float = 0.5,
        times: int = 1,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """Send the real answer's head and `after` bytes, then one byte per `interval` seconds."""
        abort = self._abort

        def spoil(request: SimRequest, response: SimResponse) -> SimResponse:
            return replace(_whole(response), drip=(after, interval), abort=abort)

        self._add_fault(None, spoil, times=times, path=path, skip=skip)

    def reset_mid_body(
        self, *, after: int = 0, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Send the real answer's head and `after` bytes of its body, then reset the connection."""

        def spoil(request: SimRequest, response: SimResponse) -> SimResponse:
            whole = _whole(response)
            return replace(whole, reset_after=min(after, max(0, len(whole.body) - 1)))

        self._add_fault(None, spoil, times=times, path=path, skip=skip)

    def truncate_body(
        self, *, keep: float = 0.5, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Cut the real answer to the first `keep` fraction of its body (a complete HTTP answer)."""

        def spoil(request: SimRequest, response: SimResponse) -> SimResponse:
            whole = _whole(response)
            return replace(whole, body=whole.body[: int(len(whole.body) * keep)])

        self._add_fault(None, spoil, times=times, path=path, skip=skip)

    def html_error_page(
        self, *, status: int = 200, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer with a proxy's HTML error page (status 200 by default, as some proxies do)."""
        page = SimResponse(status, HTML_ERROR_PAGE, {"Content-Type": "text/html"})
        self._add_fault(page, None, times=times, path=path, skip=skip)

    def wrong_encoding(
        self,
        encoding: str = "gzip",
        *,
        status: int | None = None,
        times: int = 1,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """Label the real answer (or one with `status`) `Content-Encoding: encoding`, sent plain."""

        def spoil(request: SimRequest, response: SimResponse) -> SimResponse:
            whole = _whole(response)
            headers = {**whole.headers, "Content-Encoding": encoding}
            return replace(whole, status=status or whole.status, headers=headers)

        self._add_fault(None, spoil, times=times, path=path, skip=skip)

    def oversized_body(
        self, size: int, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer 200 with a JSON-looking body of `size` bytes, generated as it is sent."""

        def chunks() -> Iterator[bytes]:
            head = b'{"results": ['
            yield head
            left = size - len(head)
            block = b" " * 65536
            while left > 0:
                yield block[:left]
                left -= len(block)

        def spoil(request: SimRequest, response: SimResponse) -> SimResponse:
            return SimResponse(200, headers={"Content-Type": "application/json"}, chunks=chunks())

        self._add_fault(None, spoil, times=times, path=path, skip=skip)

    def gzip_bomb(
        self, size: int, *, times: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        """Answer 200 with a small gzip file that inflates to `size` bytes of one CSV line."""
        body = _bomb(size)
        response = SimResponse(200, body, {"Content-Type": "application/octet-stream"})
        self._add_fault(response, None, times=times, path=path, skip=skip)

    def storm(
        self,
        status: int = 429,
        *,
        times: int = 50,
        retry_after: str | None = None,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """A run of `times` answers with `status` (429s, 5xx), with `Retry-After` when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = json.dumps({"detail": f"simulated HTTP {status}"}).encode()
        response = SimResponse(status, body, {"Content-Type": "application/json", **headers})
        self._add_fault(response, None, times=times, path=path, skip=skip)

    def repeat_answer(
        self,
        *,
        path: str | None = None,
        skip: int = 0,
        times: int = 10**6,
        paging: Iterable[str] = PAGING_PARAMS,
    ) -> None:
        """Paging that stalls: each listing's first real answer after `skip` comes back for
        every later page of it (a listing: path, body and query without the `paging` keys)."""
        ignored = frozenset(paging)
        first: dict[tuple[Any, ...], SimResponse] = {}

        def key(request: SimRequest) -> tuple[Any, ...]:
            query = sorted((k, tuple(v)) for k, v in request.query.items() if k not in ignored)
            return (request.path, tuple(query), request.body)

        def replay(request: SimRequest, response: SimResponse) -> SimResponse:
            return first.setdefault(key(request), _whole(response))

        self._add_fault(None, replay, times=times, path=path, skip=skip)

    def skew_clock(self, delta: timedelta) -> None:
        """Move every time in answers (ISO 8601, epoch-ms strings) by `delta`, companions too."""
        for sim in (self, *self.companions()):
            sim.clock_skew = delta

    def clear_faults(self) -> None:
        """End every fault: pending ones are dropped, drips stop, the clock is right again."""
        for sim in (self, *self.companions()):
            with sim.lock:
                sim._faults.clear()
                sim.clock_skew = timedelta(0)
                sim._abort.set()
                sim._abort = threading.Event()

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
            fault = self._take_fault(request)
        if fault is not None and fault.response is not None:
            return fault.response
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            response = self.handle(request)
        if fault is not None and fault.spoil is not None:
            response = fault.spoil(request, response)
        if self.clock_skew:
            response = _skewed(response, self.clock_skew)
        return response

    def _take_fault(self, request: SimRequest) -> _Fault | None:
        """The first fault for this request, counted; None when every one lets it through."""
        for fault in self._faults:
            if not fault.matches(request):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None


def _whole(response: SimResponse) -> SimResponse:
    """The answer with its body in one piece (chunks joined)."""
    if response.chunks is None:
        return response
    return replace(response, body=b"".join(response.chunks), chunks=None)


def _shift(match: re.Match[bytes], delta: timedelta) -> bytes:
    if match.group("ms"):
        millis = int(match.group("ms")) + int(delta.total_seconds() * 1000)
        return b'"%d"' % millis
    text = match.group("iso").decode()
    try:
        when = datetime.fromisoformat(text) + delta
    except ValueError:
        return match.group(0)
    seconds = text[10:].count(":") == 2
    spec = "microseconds" if "." in text else "seconds" if seconds else "minutes"
    shifted = when.isoformat(sep=match.group("sep").decode(), timespec=spec)
    # As many fraction digits as the original had.
    return shifted[: len(text)].encode()


def _skew_bytes(data: bytes, delta: timedelta) -> bytes:
    return _ISO_TIME.sub(lambda m: _shift(m, delta), data)


def _skewed(response: SimResponse, delta: timedelta) -> SimResponse:
    """The answer with every time moved by `delta`; gzip bodies are left as they are."""
    if response.chunks is None:
        return replace(response, body=_skew_bytes(response.body, delta))
    chunks = iter(response.chunks)

    def skewed() -> Iterator[bytes]:
        first = next(chunks, b"")
        if first.startswith(b"\x1f\x8b"):  # compressed: times cannot be found in it
            yield first
            yield from chunks
            return
        yield _skew_bytes(first, delta)
        for chunk in chunks:
            yield _skew_bytes(chunk, delta)

    return replace(response, chunks=skewed())


@functools.cache
def _bomb(size: int) -> bytes:
    """A gzip file inflating to `size` bytes: a CSV header cell that never ends."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"A" * 2**20
    out = [compressor.compress(b"\xef\xbb\xbfOperationLogTransactionId;")]
    for _ in range(size // len(block)):
        out.append(compressor.compress(block))
    out.append(compressor.flush())
    return b"".join(out)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a killed sync, a timeout) is not a simulator bug,
        # nor is a socket this server reset on purpose (`reset_mid_body`).
        if isinstance(sys.exc_info()[1], OSError):
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
                if response.drip is not None:
                    self._drip(response)
                elif response.reset_after is not None:
                    self.wfile.write(response.body[: response.reset_after])
                    self._reset()
                else:
                    self.wfile.write(response.body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in response.chunks:
                if chunk:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

        def _drip(self, response: SimResponse) -> None:
            after, interval = response.drip or (0, 0.0)
            abort = response.abort or threading.Event()
            self.wfile.write(response.body[:after])
            for i in range(after, len(response.body)):
                if abort.wait(interval):
                    self._reset()  # the vendor recovers: this answer ends unfinished
                    return
                self.wfile.write(response.body[i : i + 1])

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends RST, as a crashed peer or a dropping middlebox does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
