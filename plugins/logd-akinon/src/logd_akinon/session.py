"""Akinon Integrator authentication: a login token (or a configured one) in two headers.

`POST /api/nifi/login` takes the form fields `username` and `password` and answers the token
as plain text, or 400 with a plain-text message. Every other call carries the token as
`Authentication: <token>` (what the vendor page names) and `Authorization: Bearer <token>`.
Keeping the token between polls and logging in again on a 401 is `logd.LoginSession`'s.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from logd import Auth, AuthError, BearerToken, LoginSession, PollContext, ProtocolError

from .options import AkinonOptions

LOGIN_PATH = "/api/nifi/login"


def headers(token: str) -> dict[str, str]:
    """The token in both headers the vendor reads."""
    return {"Authentication": token, "Authorization": f"Bearer {token}"}


def login_session() -> LoginSession:
    """A session for a provider instance to keep between polls."""
    return LoginSession(login, headers=headers)


def static_token(token: str) -> BearerToken:
    """A configured token: never renewed, a 401 is an `AuthError`."""
    return BearerToken(token, headers=headers, refused="token refused")


def login(ctx: PollContext[AkinonOptions]) -> str:
    """Log in with the configured account; the answer's plain text is the token."""
    opts = ctx.options
    form = {
        "username": opts.username.get_secret_value() if opts.username else "",
        "password": opts.password.get_secret_value() if opts.password else "",
    }
    response = ctx.client.request(
        "POST",
        LOGIN_PATH,
        data=form,
        headers={"Accept": "text/plain, application/json"},
        credentials=False,
        allow_status={400, 401, 403},
    )
    if response.status_code != 200:
        # Masked before it is cut: a credential the vendor echoes must not leave its prefix.
        said = " ".join(ctx.client.mask(response.text).split())[:300] or response.reason_phrase
        raise AuthError(f"login refused (HTTP {response.status_code}): {said}")
    token = response.text.strip()
    if token.startswith('"'):
        # Tolerate the token arriving as a JSON string instead of bare text.
        with contextlib.suppress(json.JSONDecodeError):
            token = str(json.loads(token))
    if not token or any(c.isspace() for c in token):
        # Never quote it: whatever came back may still be a credential.
        raise ProtocolError("login answered no usable token (empty, or with whitespace)")
    return token


class Session:
    """GETs with the poll's credentials (`auth`, already applied to the client)."""

    def __init__(self, ctx: PollContext[AkinonOptions], auth: Auth) -> None:
        self.client = ctx.client
        self.auth = auth

    def get(
        self, path: str, params: Mapping[str, Any], *, allow_status: Iterable[int] = ()
    ) -> httpx.Response:
        """GET `path` with the token; a refused configured token is an `AuthError`."""
        with self.auth.authenticated():
            return self.client.request("GET", path, params=params, allow_status=allow_status)
