"""Every `[sources.auth]` kind against a scripted API: what is sent, renewed and refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logd.plugin.simulator import SimRequest, SimResponse
from logd.plugin.testing import SyncRun

PAGE = {"data": [{"id": 1, "at": "2026-01-01T00:00:00Z", "msg": "one"}]}


class Clock:
    """The provider's `now`, moved by the test."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


class TokenServer:
    """A token endpoint and a log list that takes only the latest token issued."""

    def __init__(self, path: str, *, plain: bool = False, expires_in: int | None = 100) -> None:
        self.path = path
        self.plain = plain
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.revoked = False

    def __call__(self, request: SimRequest) -> SimResponse:
        if request.path == self.path:
            token = f"session-token-{len(self.issued) + 1}"
            self.issued.append(token)
            self.revoked = False
            if self.plain:
                return SimResponse.text(token)
            body: dict[str, Any] = {"access_token": token, "token_type": "bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            return SimResponse.json({"data": {"session": body}} if "login" in self.path else body)
        valid = self.issued and not self.revoked
        wanted = f"Bearer {self.issued[-1]}" if valid else None
        if request.header("Authorization") != wanted:
            return SimResponse.json({"detail": "token expired"}, 401)
        return SimResponse.json(PAGE)


def test_basic_and_header_api_key(tmp_path: Path, api: Any) -> None:
    api.route = lambda r: SimResponse.json(PAGE)
    run = SyncRun(
        tmp_path,
        [
            api.source(name="basic", auth={"basic": {"username": "ann", "password": "pw:1"}}),
            api.source(name="key", auth={"api_key": {"name": "X-Api-Key", "value": "k-9876"}}),
        ],
    )
    assert all(r.ok for r in run.sync().values())
    by_auth = {r.header("Authorization") or r.header("X-Api-Key") for r in api.requests}
    assert by_auth == {"Basic " + base64.b64encode(b"ann:pw:1").decode(), "k-9876"}
    assert all(r.arg("X-Api-Key") is None for r in api.requests)


def test_oauth2_token_renewed_before_expiry_and_on_401(tmp_path: Path, api: Any) -> None:
    server = TokenServer("/oauth/token")
    api.route = server
    clock = Clock()
    auth = {
        "oauth2": {
            "token_url": "/oauth/token",
            "client_id": "cid",
            "client_secret": "csecret-123",
            "scope": "logs:read",
            "refresh_margin": "60s",
        }
    }
    run = SyncRun(tmp_path, [api.source(auth=auth)], now=clock)
    assert run.sync()["api"].ok
    [grant] = api.requests_to("/oauth/token")
    assert grant.form() == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": "csecret-123",
        "scope": "logs:read",
    }
    assert grant.header("Authorization") is None

    clock.at += timedelta(seconds=30)  # still valid: kept between polls
    assert run.sync()["api"].ok and len(server.issued) == 1
    clock.at += timedelta(seconds=30)  # past expires_in - margin (at least half of 100 s)
    assert run.sync()["api"].ok and len(server.issued) == 2

    server.revoked = True  # revoked early: one new token on the 401, one more try
    report = run.sync()["api"]
    assert report.ok, report.error
    assert len(server.issued) == 3 and report.requests == 3


def test_oauth2_refused_credentials_are_one_line(tmp_path: Path, api: Any) -> None:
    api.route = lambda r: SimResponse.json({"error_description": "bad client"}, 401)
    auth = {"oauth2": {"token_url": "/t", "client_id": "c", "client_secret": "wrong-secret"}}
    run = SyncRun(tmp_path, [api.source(auth=auth)])
    report = run.sync()["api"]
    assert report.error is not None and "\n" not in report.error
    assert "client credentials were refused: bad client" in report.error
    assert "wrong-secret" not in report.error


def test_login_token_at_a_path_sent_in_a_header_and_renewed_on_401(
    tmp_path: Path, api: Any
) -> None:
    server = TokenServer("/api/login", expires_in=None)
    api.route = server
    auth = {
        "login": {
            "path": "/api/login",
            "username": "ann",
            "password": "pw-secret",
            "body": {"user": {"name": "{username}", "pass": "{password}"}},
            "token": "data.session.access_token",
        }
    }
    run = SyncRun(tmp_path, [api.source(auth=auth)])
    assert run.sync()["api"].ok
    [login] = api.requests_to("/api/login")
    assert login.json() == {"user": {"name": "ann", "pass": "pw-secret"}}
    assert run.sync()["api"].ok and len(server.issued) == 1  # the session is kept
    server.revoked = True
    assert run.sync()["api"].ok and len(server.issued) == 2


def test_login_token_as_the_plain_body_in_a_custom_header(tmp_path: Path, api: Any) -> None:
    issued: list[str] = []

    def route(request: SimRequest) -> SimResponse:
        if request.path == "/session":
            issued.append("plain-token-1")
            return SimResponse.text("plain-token-1\n")
        if request.header("X-Session") != "plain-token-1":
            return SimResponse.json({"detail": "no session"}, 401)
        return SimResponse.json(PAGE)

    api.route = route
    auth = {
        "login": {
            "path": "/session",
            "username": "u",
            "password": "p-secret",
            "form": True,
            "header": "X-Session",
            "scheme": "",
        }
    }
    run = SyncRun(tmp_path, [api.source(auth=auth)])
    report = run.sync()["api"]
    assert report.ok, report.error
    assert api.requests_to("/session")[0].form() == {"username": "u", "password": "p-secret"}


def test_login_by_get_with_basic_auth(tmp_path: Path, api: Any) -> None:
    server = TokenServer("/v1/login", expires_in=None)
    api.route = server
    auth = {
        "login": {
            "path": "/v1/login",
            "method": "GET",
            "username": "ann",
            "password": "pw-secret",
            "basic": True,
            "token": "data.session.access_token",
        }
    }
    run = SyncRun(tmp_path, [api.source(auth=auth)])
    assert run.sync()["api"].ok
    [login] = api.requests_to("/v1/login")
    assert (login.method, login.body) == ("GET", b"")
    assert login.header("Authorization") == "Basic " + base64.b64encode(b"ann:pw-secret").decode()
