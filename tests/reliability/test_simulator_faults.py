"""The fault switches themselves: each spoils an answer the way its docstring says.

These hold whatever logd does with the answer, so a failure here is a broken harness, not a
logd bug: the source-fault tests rely on every switch doing exactly this.
"""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from logd.plugin.simulator import SimRequest, SimResponse, Simulator
from logd.plugin.testing import run_bounded, wait_until

PAGE = {
    "results": [
        {"id": 1, "timestamp": "2026-01-05T10:00:00.123456-04:00", "created": "1767607200000"},
        {"id": 2, "timestamp": "2026-01-05 10:00", "day": "2026-01-05"},
    ],
    "next": "http://x/logs?offset=100",
}


class Pages(Simulator):
    """A listing that echoes the page it was asked for."""

    provider = "pages"

    def handle(self, request: SimRequest) -> SimResponse:
        return SimResponse.json({**PAGE, "offset": request.arg("offset"), "q": request.arg("q")})


@pytest.fixture
def sim() -> Iterator[Pages]:
    with Pages() as s:
        yield s


def get(sim: Simulator, path: str = "/logs", **params: str) -> httpx.Response:
    return httpx.get(f"{sim.base_url}{path}", params=params, timeout=5)


def test_skew_moves_iso_times_and_epoch_millis_and_keeps_their_form(sim: Pages) -> None:
    sim.skew_clock(timedelta(days=3))
    body = get(sim).json()
    first, second = body["results"]
    assert first["timestamp"] == "2026-01-08T10:00:00.123456-04:00"
    assert first["created"] == str(1767607200000 + 3 * 86_400_000)
    assert second["timestamp"] == "2026-01-08 10:00"
    assert second["day"] == "2026-01-05"  # a date alone is not a time: left as it is
    sim.clear_faults()
    assert get(sim).json()["results"][0]["timestamp"] == PAGE["results"][0]["timestamp"]


def test_truncate_html_storm_and_skip(sim: Pages) -> None:
    sim.truncate_body(keep=0.5, skip=1)
    sim.html_error_page(path="/html")
    assert get(sim).json()["offset"] is None  # skipped: the real answer
    cut = get(sim)
    assert cut.status_code == 200 and len(cut.content) < len(json.dumps(PAGE)) // 2 + 20
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    page = get(sim, "/html")
    assert page.headers["content-type"] == "text/html" and b"502 Bad Gateway" in page.content
    sim.storm(429, times=3)
    assert [get(sim).status_code for _ in range(4)] == [429, 429, 429, 200]
    sim.storm(503, times=1, retry_after="7")
    assert get(sim).headers["retry-after"] == "7"


def test_wrong_encoding_and_oversized_body(sim: Pages) -> None:
    sim.wrong_encoding("gzip", status=502)
    with pytest.raises(httpx.DecodingError):
        get(sim)
    sim.oversized_body(3 * 2**20)
    with httpx.stream("GET", f"{sim.base_url}/logs") as response:
        assert sum(len(c) for c in response.iter_raw()) == 3 * 2**20


def test_gzip_bomb_inflates_to_its_size(sim: Pages) -> None:
    sim.gzip_bomb(20 * 2**20)
    raw = get(sim).content
    assert len(raw) < 2**20
    inflated = zlib.decompressobj(wbits=31).decompress(raw)
    assert len(inflated) >= 20 * 2**20 and b"\n" not in inflated
    assert gzip.decompress(raw)[:3] == b"\xef\xbb\xbf"


def test_repeat_answer_stalls_each_listing_on_its_first_page(sim: Pages) -> None:
    sim.repeat_answer(skip=1)
    assert get(sim, offset="0", q="a").json()["offset"] == "0"
    assert get(sim, offset="100", q="a").json()["offset"] == "100"  # the first after skip
    assert get(sim, offset="200", q="a").json()["offset"] == "100"
    assert get(sim, offset="300", q="b").json()["offset"] == "300"  # another listing
    assert get(sim, offset="400", q="b").json()["offset"] == "300"
    sim.clear_faults()
    assert get(sim, offset="500", q="a").json()["offset"] == "500"


def raw_get(sim: Simulator) -> socket.socket:
    host, port = sim.base_url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=5)
    conn.sendall(b"GET /logs HTTP/1.1\r\nHost: x\r\n\r\n")
    return conn


def read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_reset_mid_body_sends_the_head_and_some_bytes_then_a_reset(sim: Pages) -> None:
    sim.reset_mid_body(after=10)
    conn = raw_get(sim)
    head, body = read_head(conn)
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    try:
        while chunk := conn.recv(4096):
            body += chunk
    except ConnectionResetError:
        pass
    conn.close()
    assert len(body) == 10 < length


def test_drip_sends_a_byte_at_a_time_until_the_fault_is_cleared(sim: Pages) -> None:
    sim.drip(after=5, interval=0.05)
    conn = raw_get(sim)
    head, body = read_head(conn)
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])

    def more() -> bytes | None:
        nonlocal body
        body += conn.recv(1)
        return body if len(body) >= 8 else None

    wait_until(more, 10, "dripped bytes")
    sim.clear_faults()  # the drip hangs up: the client sees the body end early

    def drain() -> int:
        got = len(body)
        try:
            while chunk := conn.recv(4096):
                got += len(chunk)
        except ConnectionResetError:
            pass
        return got

    got, overran = run_bounded(drain, 10)
    conn.close()
    assert not overran and got < length
