"""logd.auth: static tokens and login sessions, through a real SourceClient on a mock transport."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from logd import AuthError, BearerToken, LoginSession, PollContext, ProviderOptions, Token
from logd.plugin.http import RetryPolicy, SourceClient

BASE = "http://api.test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Vendor:
    """An API whose `/login` issues numbered tokens and whose `/logs` accepts `valid` ones."""

    def __init__(self) -> None:
        self.issued = 0
        self.valid: set[str] = set()
        self.seen: list[dict[str, str]] = []
        self.refuse_all = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            self.issued += 1
            token = f"session-token-{self.issued:04d}"
            self.valid.add(token)
            return httpx.Response(200, json={"token": token, "ttl": 100})
        self.seen.append(dict(request.headers))
        auth = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.refuse_all or auth not in self.valid:
            return httpx.Response(401, json={"detail": "nope"})
        return httpx.Response(200, json={"ok": True})


def poll(vendor: Vendor, now: Callable[[], datetime] = lambda: T0) -> PollContext[Any]:
    """The context of one poll: a fresh client, as the engine makes for each poll."""
    secrets: list[str] = []  # the engine shares one list between client and context
    client = SourceClient(
        "src",
        BASE,
        transport=httpx.MockTransport(vendor),
        retry=RetryPolicy(attempts=1),
        sleep=lambda s: None,
        secrets=secrets,
    )
    return PollContext(
        source="src",
        options=ProviderOptions(base_url=BASE),
        client=client,
        cursor=None,
        log=logging.getLogger("test"),
        now=now,
        secrets=secrets,
    )


def login(ctx: PollContext[Any]) -> Token:
    body = ctx.client.post_json("/login", credentials=False)
    return Token(body["token"], expires_in=body["ttl"])


def get(ctx: PollContext[Any], auth: BearerToken | LoginSession) -> Any:
    with auth.authenticated():
        return ctx.client.get_json("/logs")


def test_a_bearer_token_goes_in_its_header_and_a_401_is_an_auth_error_at_once() -> None:
    vendor = Vendor()
    vendor.valid.add("static-token-123")
    ctx = poll(vendor)
    auth = BearerToken("static-token-123", refused="Acme refused the token")
    auth.apply(ctx)
    assert get(ctx, auth) == {"ok": True}
    assert vendor.seen[-1]["authorization"] == "Bearer static-token-123"
    assert "static-token-123" in ctx.secrets and "static-token-123" not in repr(auth)

    vendor.refuse_all = True
    with pytest.raises(AuthError, match=r"^Acme refused the token \(HTTP 401\): nope$"):
        get(ctx, auth)
    assert vendor.issued == 0 and len(vendor.seen) == 2  # no login, no retry


def test_a_custom_header_without_prefix() -> None:
    vendor = Vendor()
    ctx = poll(vendor)
    BearerToken("k" * 20, header="Authenticate", prefix="").apply(ctx)
    ctx.client.request("GET", "/logs", allow_status={401})
    assert vendor.seen[-1]["authenticate"] == "k" * 20


def test_a_login_session_outlives_the_poll_and_masks_every_token() -> None:
    vendor = Vendor()
    session = LoginSession(login)
    for _ in range(3):
        ctx = poll(vendor)
        session.apply(ctx)
        assert get(ctx, session) == {"ok": True}
        assert "session-token-0001" in ctx.secrets
        assert ctx.client.mask("x session-token-0001") == "x ***"
    assert vendor.issued == 1 == session.logins


def test_a_token_is_renewed_a_margin_before_it_expires_never_before_half_its_life() -> None:
    vendor = Vendor()
    clock = [T0]
    session = LoginSession(login, refresh_margin=30)
    ctx = poll(vendor, now=lambda: clock[0])
    session.apply(ctx)
    clock[0] = T0 + timedelta(seconds=69)
    get(ctx, session)
    assert vendor.issued == 1
    clock[0] = T0 + timedelta(seconds=70)  # ttl 100 - margin 30
    get(ctx, session)
    assert vendor.issued == 2
    assert vendor.seen[-1]["authorization"] == "Bearer session-token-0002"

    greedy = LoginSession(login, refresh_margin=1000)
    clock[0] = T0
    greedy.apply(ctx)
    clock[0] = T0 + timedelta(seconds=49)
    get(ctx, greedy)
    assert vendor.issued == 3  # renewed at half its life, not at every request


def test_a_401_means_one_fresh_login_then_a_clear_auth_error() -> None:
    vendor = Vendor()
    session = LoginSession(login, refused_again="Acme refused a fresh token", hint="check scope")
    ctx = poll(vendor)
    session.apply(ctx)
    vendor.valid.clear()  # the vendor ended the session
    assert get(ctx, session) == {"ok": True}
    assert vendor.issued == 2 and "session-token-0002" in ctx.secrets

    vendor.refuse_all = True
    with pytest.raises(AuthError, match=r"^Acme refused a fresh token: .*HTTP 401") as caught:
        get(ctx, session)
    assert caught.value.hint == "check scope"
    assert vendor.issued == 3  # exactly one more login
