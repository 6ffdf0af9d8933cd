"""The source HTTP client: retries, Retry-After, vendor error text, credential pinning."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from logd.errors import AuthError, HTTPStatusError, ProtocolError, TransportError
from logd.plugin.http import RetryPolicy, SourceClient, retry_after_seconds

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, waits: list[float], **kwargs: object) -> SourceClient:
    c = SourceClient(
        "src",
        "https://api.example.com/base",
        retry=RetryPolicy(attempts=4, initial_wait=0.5, max_wait=30),
        sleep=waits.append,
        transport=httpx.MockTransport(handler),
        **kwargs,  # type: ignore[arg-type]
    )
    c.set_credentials({"Authorization": "Bearer s3cret"})
    return c


def sequence(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler, seen


def test_429_waits_as_retry_after_says_then_succeeds() -> None:
    waits: list[float] = []
    handler, seen = sequence(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow down"}),
        httpx.Response(200, json={"ok": True}),
    )
    assert client(handler, waits).get_json("/x") == {"ok": True}
    assert waits == [7.0] and len(seen) == 2


def test_retry_after_as_an_http_date_and_capped() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    response = httpx.Response(429, headers={"Retry-After": email.utils.format_datetime(later)})
    assert 115 <= (retry_after_seconds(response) or 0) <= 120
    waits: list[float] = []
    handler, _ = sequence(response, httpx.Response(200, json={}))
    client(handler, waits).get_json("/x")
    assert waits == [30.0]  # capped at max_wait


def test_500_is_retried_with_growing_jittered_backoff() -> None:
    waits: list[float] = []
    handler, seen = sequence(
        httpx.Response(500, text="oops"),
        httpx.Response(502, text="oops"),
        httpx.Response(503, text="oops"),
        httpx.Response(200, json=[1]),
    )
    assert client(handler, waits).get_json("/x") == [1]
    assert len(seen) == 4 and len(waits) == 3
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0


def test_retries_exhausted_name_url_status_and_vendor_text() -> None:
    waits: list[float] = []
    handler, seen = sequence(httpx.Response(503, json={"detail": "maintenance until 10:00"}))
    with pytest.raises(HTTPStatusError) as info:
        client(handler, waits).get_json("/logs", params={"offset": 100})
    message = str(info.value)
    assert "https://api.example.com/base/logs?offset=100" in message
    assert "HTTP 503" in message and "maintenance until 10:00" in message
    assert "gave up after 4 attempts" in message and "s3cret" not in message
    assert len(seen) == 4


def test_other_4xx_is_not_retried_and_keeps_jsonapi_text() -> None:
    waits: list[float] = []
    body = {
        "errors": [
            {"status": 404, "title": "Not Found", "detail": "The resource could not be found"}
        ]
    }
    handler, seen = sequence(httpx.Response(404, json=body))
    with pytest.raises(HTTPStatusError) as info:
        client(handler, waits).get_json("/x")
    assert "Not Found: The resource could not be found" in str(info.value)
    assert info.value.status_code == 404 and len(seen) == 1 and waits == []


def test_allowed_status_is_returned() -> None:
    handler, _ = sequence(httpx.Response(404, text="no results"))
    response = client(handler, []).request("GET", "/x", allow_status={404})
    assert response.status_code == 404


def test_transport_errors_are_retried_then_reported() -> None:
    waits: list[float] = []
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError) as info:
        client(handler, waits).get_json("/x")
    assert len(calls) == 4 and "connection refused" in str(info.value)


def test_invalid_json_is_a_protocol_error_naming_the_url() -> None:
    handler, _ = sequence(httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(ProtocolError) as info:
        client(handler, []).get_json("/x")
    assert "invalid JSON" in str(info.value) and "/base/x" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 123456789012345678901234567890, "n": [1, 2.5, "x"]}',  # past 64 bits
        b'{"id": -9223372036854775809}',  # just under the 64-bit minimum: 19 digits
        b'{"id": 18446744073709551615, "s": "\\u00fc"}',
        b'{"v": NaN, "w": Infinity}',  # orjson refuses these; the stdlib reads them
        '{"a": "\u00fc"}'.encode("utf-16"),  # not UTF-8
        b'{"a": 1, "a": 2}',  # the last of a repeated key wins, as in the stdlib
    ],
)
def test_json_bodies_decode_exactly_as_the_stdlib_does(body: bytes) -> None:
    handler, _ = sequence(httpx.Response(200, content=body))
    got = client(handler, []).get_json("/x")
    assert repr(got) == repr(json.loads(body))  # repr: NaN != NaN, and int vs float shows


def test_credentials_only_go_to_the_configured_origin() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/base/start":
            return httpx.Response(302, headers={"Location": "https://evil.example.net/steal"})
        if request.url.path == "/base/same":
            return httpx.Response(302, headers={"Location": "/base/final"})
        return httpx.Response(200, json={})

    c = client(handler, [])
    c.get_json("/start")
    c.get_json("/same")
    c.get_json("http://api.example.com/base/plain")  # same host, other scheme
    c.get_json("https://api.example.com:8443/base/port")  # same host, other port
    by_url = {str(r.url): r.headers.get("Authorization") for r in seen}
    assert by_url["https://api.example.com/base/start"] == "Bearer s3cret"
    assert by_url["https://evil.example.net/steal"] is None
    assert by_url["https://api.example.com/base/final"] == "Bearer s3cret"
    assert by_url["http://api.example.com/base/plain"] is None
    assert by_url["https://api.example.com:8443/base/port"] is None


def test_user_agent_and_response_size_cap() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json.dumps(["x" * 2000]).encode())

    with pytest.raises(
        ProtocolError, match="over the limit of 1000 bytes; raise max_response_size"
    ):
        client(handler, [], max_response_bytes=1000).get_json("/big")
    assert seen[0].headers["User-Agent"].startswith("logd/")


def test_stream_sends_no_credentials_by_default() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"a" * 100_000)

    with client(handler, []).stream("https://api.example.com/base/file") as chunks:
        assert sum(len(c) for c in chunks) == 100_000
    assert "Authorization" not in seen[0].headers


def test_a_401_means_one_fresh_login_and_one_more_try() -> None:
    logins: list[int] = []
    handler, seen = sequence(
        httpx.Response(401, json={"detail": "session expired"}),
        httpx.Response(200, json={"ok": 1}),
    )
    c = client(handler, [])

    def login() -> None:
        logins.append(1)
        c.set_credentials({"Authorization": "Bearer fresh"})

    c.set_login(login)
    assert c.get_json("/x") == {"ok": 1}
    assert len(logins) == 1
    assert [r.headers["Authorization"] for r in seen] == ["Bearer s3cret", "Bearer fresh"]


def test_a_401_right_after_a_fresh_login_is_an_auth_error() -> None:
    handler, seen = sequence(httpx.Response(401, json={"detail": "account disabled"}))
    c = client(handler, [])
    logins: list[int] = []
    c.set_login(lambda: logins.append(1))
    with pytest.raises(AuthError, match="HTTP 401 right after a fresh login: account disabled"):
        c.get_json("/x")
    assert len(logins) == 1 and len(seen) == 2


def test_without_a_login_or_credentials_a_401_is_a_plain_status_error() -> None:
    handler, seen = sequence(httpx.Response(401, json={"detail": "no"}))
    c = client(handler, [])
    with pytest.raises(HTTPStatusError):
        c.get_json("/x")
    c.set_login(lambda: pytest.fail("login for a request sent without credentials"))
    with pytest.raises(HTTPStatusError):
        c.request("POST", "/login", credentials=False)
    assert len(seen) == 2


def test_clients_share_one_tls_context_instead_of_reading_the_ca_bundle_each_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every poll builds a client; reading the CA bundle into a new TLS context cost ~20 ms of
    # CPU each time, most of an idle poll.
    import ssl

    from logd.plugin.deadline import tls_context

    shared = tls_context()
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    clients = [SourceClient("s", "https://api.example.com") for _ in range(3)]
    for client in clients:
        client.close()
    assert made == []
    assert tls_context() is shared
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
