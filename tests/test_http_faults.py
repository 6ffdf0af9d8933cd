"""The source HTTP client against faulty servers: redirects, drip feeds, bad encodings, huge
bodies, stray cookies and secrets echoed back. Each fault is one of a kind every provider meets
through `SourceClient`."""

from __future__ import annotations

import gzip
import io
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from logd import logging_setup as logs
from logd import redact
from logd.errors import HTTPStatusError, ProtocolError, TransportError
from logd.plugin.http import LOW_SPEED_LIMIT, RetryPolicy, SourceClient

BASE = "https://api.example.com/base"
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, *, attempts: int = 3, **kwargs: object) -> SourceClient:
    c = SourceClient(
        "src",
        BASE,
        retry=RetryPolicy(attempts=attempts, initial_wait=0.5, max_wait=30),
        sleep=lambda _: None,
        transport=httpx.MockTransport(handler),
        **kwargs,  # type: ignore[arg-type]
    )
    c.set_credentials({"Authorization": "Bearer s3cret-token"})
    return c


def recording(
    route: Callable[[httpx.Request], httpx.Response],
) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return route(request)

    return handler, seen


# -- redirects (RFC 9110 §15.4) -------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
def test_a_token_post_redirected_with_307_or_308_keeps_method_and_form(status: int) -> None:
    # The Elastic Path token endpoint answered `308 Location: /oauth/access_token/`.
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/access_token":
            return httpx.Response(status, headers={"Location": "/oauth/access_token/"})
        if request.method != "POST":
            return httpx.Response(405, json={"detail": "method not allowed"})
        return httpx.Response(200, json={"access_token": "t", "form": request.content.decode()})

    handler, seen = recording(route)
    form = {"grant_type": "client_credentials", "client_id": "id", "client_secret": "cs-123"}
    body = make_client(handler).post_json(
        "https://api.example.com/oauth/access_token", data=form, credentials=False
    )
    assert [r.method for r in seen] == ["POST", "POST"]
    assert seen[1].url.path == "/oauth/access_token/"
    assert body["form"] == seen[0].content.decode() and "client_secret=cs-123" in body["form"]


@pytest.mark.parametrize(
    ("method", "status", "then"),
    [
        ("POST", 301, "GET"),
        ("POST", 302, "GET"),
        ("POST", 303, "GET"),
        ("PUT", 303, "GET"),
        ("HEAD", 303, "HEAD"),
        ("PUT", 301, "PUT"),
        ("DELETE", 302, "DELETE"),
        ("PUT", 307, "PUT"),
    ],
)
def test_redirects_change_the_method_as_rfc_9110_says(method: str, status: int, then: str) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/base/old":
            return httpx.Response(status, headers={"Location": "/base/new"})
        return httpx.Response(200, json={})

    handler, seen = recording(route)
    make_client(handler).request(method, "/old", json={"a": 1})
    assert seen[1].method == then
    assert bool(seen[1].content) == (then == method)  # the body goes along when the method stays


def test_a_body_is_never_redirected_to_another_origin() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://evil.example.net:8443/token"})

    handler, seen = recording(route)
    with pytest.raises(ProtocolError) as info:
        make_client(handler).request(
            "POST", "/oauth/token", data={"client_secret": "cs-123"}, credentials=False
        )
    message = str(info.value)
    assert "https://api.example.com:443" in message
    assert "https://evil.example.net:8443" in message
    assert [str(r.url.host) for r in seen] == ["api.example.com"]


def test_a_redirect_keeps_the_query_once() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/base/old":
            return httpx.Response(307, headers={"Location": "/base/new?page=2"})
        return httpx.Response(200, json={})

    handler, seen = recording(route)
    make_client(handler).get_json("/old", params={"page": "2"})
    assert seen[1].url.query == b"page=2"


def test_a_redirect_loop_is_a_transport_error_naming_the_url() -> None:
    handler, seen = recording(lambda r: httpx.Response(302, headers={"Location": "/base/loop"}))
    with pytest.raises(TransportError, match=r"GET https://api.example.com/base/loop .*redirects"):
        make_client(handler, attempts=2).get_json("/loop")
    assert len(seen) == 2 * 6


# -- cookies are credentials ----------------------------------------------------------------


def test_a_cookie_goes_only_back_to_the_origin_that_set_it() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/base/login":
            return httpx.Response(
                200, json={}, headers={"Set-Cookie": "session=abcdef0123456789; Path=/"}
            )
        if request.url.path == "/base/away":
            return httpx.Response(302, headers={"Location": "https://api.example.com:8443/x"})
        if request.url.host == "files.example.org":
            return httpx.Response(200, content=b"x", headers={"Set-Cookie": "other=zzz; Path=/"})
        return httpx.Response(200, json={})

    handler, seen = recording(route)
    c = make_client(handler)
    c.get_json("/login")
    c.get_json("/away")  # same host, another port: cookie rules ignore ports, we do not
    c.get_json("http://api.example.com/base/plain")  # same host, another scheme
    with c.stream("https://files.example.org/part1.csv") as chunks:
        list(chunks)
    c.get_json("/again")
    cookies = {str(r.url): r.headers.get("Cookie") for r in seen}
    assert cookies["https://api.example.com:8443/x"] is None
    assert cookies["http://api.example.com/base/plain"] is None
    assert cookies["https://files.example.org/part1.csv"] is None
    # Back home the session cookie goes along; the other host's cookie was never kept.
    assert cookies["https://api.example.com/base/again"] == "session=abcdef0123456789"


# -- bodies that do not match their Content-Encoding ----------------------------------------


def wire(body: bytes, status: int = 200, **headers: str) -> httpx.Response:
    """A response whose body is undecoded bytes on the wire, as a server sends it."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def test_a_200_labelled_gzip_with_a_plain_body_is_a_transport_error_naming_the_url() -> None:
    handler, seen = recording(lambda r: wire(b"{}", **{"Content-Encoding": "gzip"}))
    with pytest.raises(TransportError) as info:
        make_client(handler, attempts=3).get_json("/logs")
    assert "GET https://api.example.com/base/logs failed after 3 attempts" in str(info.value)
    assert "Content-Encoding gzip" in str(info.value)
    assert len(seen) == 3


def test_a_502_labelled_gzip_is_retried_like_any_transport_error() -> None:
    answers = iter([wire(b"<html>bad gateway</html>", 502, **{"Content-Encoding": "gzip"})])

    def route(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or httpx.Response(200, json={"ok": True})

    handler, seen = recording(route)
    assert make_client(handler).get_json("/logs") == {"ok": True}
    assert len(seen) == 2


def test_an_unrequested_content_encoding_is_a_transport_error() -> None:
    handler, _ = recording(lambda r: wire(b"\x00\x01", **{"Content-Encoding": "br"}))
    with pytest.raises(TransportError, match="'br', which logd does not ask for"):
        make_client(handler, attempts=1).get_json("/logs")


def test_truncated_gzip_is_a_transport_error() -> None:
    handler, _ = recording(
        lambda r: wire(gzip.compress(b'{"a": 1}')[:-6], **{"Content-Encoding": "gzip"})
    )
    with pytest.raises(TransportError, match="ends early"):
        make_client(handler, attempts=1).get_json("/logs")


@pytest.mark.parametrize(
    ("coding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 says
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw, as some servers send it
        ("identity", lambda b: b),
    ],
)
def test_compressed_bodies_decode(coding: str, pack: Callable[[bytes], bytes]) -> None:
    body = b'{"records": [' + b",".join(b'{"id": %d}' % i for i in range(5000)) + b"]}"
    handler, seen = recording(lambda r: wire(pack(body), **{"Content-Encoding": coding}))
    assert len(make_client(handler).get_json("/logs")["records"]) == 5000
    assert seen[0].headers["Accept-Encoding"] == "gzip, deflate"


def test_a_compressed_bomb_stops_at_the_size_cap() -> None:
    bomb = gzip.compress(b"[" + b" " * (16 * 1024 * 1024) + b"]", compresslevel=9)
    handler, _ = recording(lambda r: wire(bomb, **{"Content-Encoding": "gzip"}))
    with pytest.raises(ProtocolError, match="over the limit of 1048576 bytes"):
        make_client(handler, max_response_bytes=1024 * 1024).get_json("/logs")


def test_a_too_large_body_is_one_line_naming_url_size_and_key() -> None:
    handler, _ = recording(
        lambda r: wire(b"[" + b"1," * 5000 + b"1]", **{"Content-Length": "10003"})
    )
    with pytest.raises(ProtocolError) as info:
        make_client(handler, max_response_bytes=4096).get_json("/logs")
    assert str(info.value) == (
        "GET https://api.example.com/base/logs: response of 10003 bytes is over the limit of "
        "4096 bytes; raise max_response_size for source src if the vendor's pages are really "
        "this large"
    )


def test_peak_memory_stays_bounded_for_an_oversized_page(tmp_path: Path) -> None:
    # ru_maxrss is a process's peak, so each case runs in a fresh interpreter.
    script = textwrap.dedent(
        """
        import resource, sys, zlib
        import httpx
        from logd.errors import ProtocolError
        from logd.plugin.http import RetryPolicy, SourceClient

        class Generated(httpx.SyncByteStream):
            def __init__(self, make):
                self.make = make
            def __iter__(self):
                return self.make()

        def page():  # 50 MB of tiny records, produced as it is read
            yield b"["
            for i in range(0, 2_500_000, 1000):
                yield b"".join(b'{"id":%d,"ok":true},' % n for n in range(i, i + 1000))
            yield b"1]"

        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = b" " * (1 << 20)
        bomb = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB

        def bomb_chunks():
            for at in range(0, len(bomb), 65536):
                yield bomb[at : at + 65536]

        def handler(request):
            if request.url.path == "/bomb":
                headers = {"Content-Encoding": "gzip"}
                return httpx.Response(200, headers=headers, stream=Generated(bomb_chunks))
            return httpx.Response(200, stream=Generated(page))

        client = SourceClient("src", "https://api.example.com", retry=RetryPolicy(attempts=1),
                              transport=httpx.MockTransport(handler))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in ("/page", "/bomb"):
            try:
                client.get_json(path)
            except ProtocolError as exc:
                print(exc, file=sys.stderr)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(before // 1024, after // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    before_mb, after_mb = map(int, done.stdout.split())
    assert done.stderr.count("over the limit") == 2, done.stderr
    # Reading stops at the cap (4 MiB) whatever comes after it, compressed or not.
    assert after_mb - before_mb < 30, (before_mb, after_mb)


# -- deadlines: `timeout` bounds a whole request --------------------------------------------


class DripServer:
    """A real HTTP server on 127.0.0.1 that sends its answer one byte at a time."""

    def __init__(self, head: bytes, body: bytes, *, drip_head: bool = False, gap: float = 0.1):
        self.head, self.body, self.drip_head, self.gap = head, body, drip_head, gap
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if not self.drip_head:
                    conn.sendall(self.head)
                for byte in (self.head if self.drip_head else b"") + self.body:
                    if self.stop.wait(self.gap):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up: what the test expects

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def drip() -> Iterator[Callable[..., DripServer]]:
    servers: list[DripServer] = []

    def start(head: bytes, body: bytes, **kwargs: object) -> DripServer:
        server = DripServer(head, body, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
BODY_100 = b"[" + b"1," * 48 + b"11]"


def local_client(port: int, **kwargs: object) -> SourceClient:
    return SourceClient(
        "src",
        f"http://127.0.0.1:{port}",
        retry=RetryPolicy(attempts=1),
        sleep=lambda _: None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_body_dripping_a_byte_at_a_time_fails_after_the_timeout(
    drip: Callable[..., DripServer],
) -> None:
    # 100 bytes at one per 0.1 s would take 10 s; each read comes well within the 0.5 s timeout.
    server = drip(HEAD_100, BODY_100)
    with pytest.raises(TransportError) as info:
        local_client(server.port, timeout=0.5).get_json("/slow")
    assert str(info.value) == (
        f"GET http://127.0.0.1:{server.port}/slow failed after 1 attempts: "
        "no complete answer within the source's timeout (0.5s)"
    )


def test_headers_dripping_a_byte_at_a_time_fail_after_the_timeout(
    drip: Callable[..., DripServer],
) -> None:
    server = drip(HEAD_100, BODY_100, drip_head=True)
    with pytest.raises(TransportError, match="no complete answer within the source's timeout"):
        local_client(server.port, timeout=0.5).get_json("/slow")


def test_a_download_is_bounded_by_download_timeout(drip: Callable[..., DripServer]) -> None:
    server = drip(HEAD_100, b"x" * 100, gap=0.05)
    client = local_client(server.port, timeout=5, download_timeout=0.5)
    late = r"took longer than the source's download_timeout \(0.5s\)"
    with pytest.raises(TransportError, match=late), client.stream("/part.csv") as chunks:
        for _ in chunks:
            pass


def test_a_stalled_download_fails_after_the_timeout(drip: Callable[..., DripServer]) -> None:
    server = drip(HEAD_100, b"x" * 100, gap=60)
    client = local_client(server.port, timeout=0.3, download_timeout=60)
    stalled = "broke off: ReadTimeout"
    with pytest.raises(TransportError, match=stalled), client.stream("/part.csv") as chunks:
        for _ in chunks:
            pass


def test_a_download_dripping_within_each_wait_stops_under_the_low_speed_limit(
    drip: Callable[..., DripServer],
) -> None:
    # 20 bytes/s: no wait lasts the 0.3 s timeout, the hour of download_timeout is far off.
    server = drip(HEAD_100, b"x" * 100, gap=0.05)
    client = local_client(server.port, timeout=0.3, download_timeout=3600)
    stalled = f"/part.csv stalled: under {LOW_SPEED_LIMIT} bytes/s for 0.3s"
    with pytest.raises(TransportError, match=stalled), client.stream("/part.csv") as chunks:
        for _ in chunks:
            pass


def test_a_download_comes_in_pieces_of_at_most_chunk_size(
    drip: Callable[..., DripServer],
) -> None:
    server = drip(HEAD_100, b"x" * 100, gap=0)
    client = local_client(server.port, timeout=5)
    with client.stream("/part.csv", chunk_size=16) as chunks:
        pieces = list(chunks)
    assert b"".join(pieces) == b"x" * 100 and max(map(len, pieces)) <= 16


def test_a_quick_answer_over_a_real_socket_is_read_whole(drip: Callable[..., DripServer]) -> None:
    server = drip(HEAD_100, BODY_100, gap=0)
    assert local_client(server.port, timeout=5).get_json("/fast") == [1] * 48 + [11]


# -- secrets: masked before text is cut, never in reprs or log lines ------------------------


def test_a_secret_straddling_the_cut_of_vendor_text_is_masked_whole() -> None:
    token = "tok-" + "A1b2C3d4" * 4
    text = "x" * 290 + " " + token + " rest"  # the 300-character cut falls inside the token
    handler, _ = recording(lambda r: httpx.Response(400, json={"detail": text}))
    with pytest.raises(HTTPStatusError) as info:
        make_client(handler, secrets=[token]).get_json("/x")
    assert "tok-A1b2C" not in str(info.value)
    assert info.value.vendor_text.endswith(" *** rest")


def test_a_credential_header_echoed_back_is_masked_even_percent_encoded() -> None:
    echo = "got s3cret%2Ftoken%2B1 and " + "y" * 300
    handler, _ = recording(lambda r: httpx.Response(400, text=echo))
    c = make_client(handler)
    c.set_credentials({"Authorization": "Bearer s3cret/token+1"})
    with pytest.raises(HTTPStatusError) as info:
        c.get_json("/x")
    assert "s3cret" not in str(info.value) and "got *** and" in str(info.value)


def test_mask_knows_every_form_and_the_longest_first() -> None:
    secrets = ["ab/cd+ef", "ab/cd+ef-longer"]
    text = 'raw ab/cd+ef-longer, url ab%2Fcd%2Bef, form ab%2Fcd%2Bef, json "ab\\/cd+ef"'
    assert redact.mask(text, secrets) == 'raw ***, url ***, form ***, json "***"'


def test_the_repr_shows_no_user_info_and_no_header() -> None:
    c = SourceClient("src", "https://user:pa55word@api.example.com/v1")
    c.set_credentials({"Authorization": "Bearer s3cret-token"})
    assert repr(c) == "<SourceClient src https://api.example.com/v1>"


@pytest.fixture
def log_setup() -> Iterator[Callable[[str], None]]:
    yield logs.setup
    for name in ("logd", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def test_no_log_line_carries_a_registered_secret_at_debug_level(
    log_setup: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    log_setup("debug")
    handler, _ = recording(lambda r: httpx.Response(200, json={}))
    c = make_client(handler)
    c.set_credentials({"Authorization": "Bearer z9-credential-value"})
    c.get_json("/x", params={"api_key": "z9-credential-value"})
    logging.getLogger("logd.source.src").debug("token is %s", "z9-credential-value")
    try:
        raise ValueError("boom z9-credential-value")
    except ValueError:
        logging.getLogger("logd.engine").exception("failed")
    err = capsys.readouterr().err
    assert "HTTP Request: GET" in err  # httpx's own lines go through the same masked handler
    assert "token is ***" in err and "ValueError: boom ***" in err
    assert "z9-credential-value" not in err


def test_a_header_value_that_cannot_be_sent_is_not_quoted_in_the_error(
    drip: Callable[..., DripServer],
) -> None:
    server = drip(HEAD_100, b"", gap=0)
    c = local_client(server.port, timeout=2)
    c.set_credentials({"Authorization": "Bearer leaky\nvalue"})
    with pytest.raises(TransportError) as info:
        c.get_json("/x")
    assert "leaky" not in str(info.value)


def test_only_credential_headers_are_masked_not_ids_sent_with_them() -> None:
    handler, _ = recording(lambda r: httpx.Response(400, text="fleet 1234 has no key k-99"))
    c = make_client(handler)
    c.set_credentials({"Authorization": "Bearer k-99", "Fleet-Id": "1234"})
    with pytest.raises(HTTPStatusError) as info:
        c.get_json("/x")
    assert info.value.vendor_text == "fleet 1234 has no key ***"


def test_the_log_filter_keeps_the_newest_credentials_when_it_is_full() -> None:
    redact.register("first-credential")
    for n in range(redact.MAX_REGISTERED):
        redact.register(f"rotated-token-{n:04d}")
    assert "first-credential" not in redact.registered()
    assert redact.registered()[-1] == f"rotated-token-{redact.MAX_REGISTERED - 1:04d}"


def test_log_lines_through_the_live_display_are_masked_too(
    log_setup: Callable[[str], None],
) -> None:
    from rich.console import Console

    log_setup("info")
    redact.register("z8-display-credential")
    out = io.StringIO()
    with logs.through(Console(file=out, width=200)):
        logging.getLogger("logd.source.src").info("got z8-display-credential back")
    assert "got *** back" in out.getvalue() and "z8-display" not in out.getvalue()
