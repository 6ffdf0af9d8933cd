"""Akinon Integrator authentication: a login token (or a configured one) in two headers.

`POST /api/nifi/login` takes the form fields `username` and `password` and answers the token
as plain text, or 400 with a plain-text message. Every other call carries the token as
`Authentication: <token>` (what the vendor page names) and `Authorization: Bearer <token>`.

The provider keeps the login token on its instance between polls (memory only), so a
daemon's idle poll costs only its list requests; on a 401 the client (`set_login`) logs in
again once and repeats the request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from logd import AuthError, HTTPStatusError, ProtocolError, SourceClient

LOGIN_PATH = "/api/nifi/login"


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


class Session:
    """Sends requests with the current token; logs in lazily (and, via the client, on a 401)."""

    def __init__(
        self,
        client: SourceClient,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        remembered: str | None = None,
        on_login: Callable[[str], None] = lambda token: None,
    ) -> None:
        self.client = client
        self._static = token
        self._username = username or ""
        self._password = password or ""
        self._on_login = on_login
        self._token: str | None = None
        if token is None:
            # A login session: the client logs in again once when the vendor answers 401.
            client.set_login(self.login)
        if token or remembered:
            self._use(token or remembered or "")

    def _use(self, token: str) -> None:
        self._token = token
        self.client.set_credentials({"Authentication": token, "Authorization": f"Bearer {token}"})

    def login(self) -> None:
        """Log in with the configured account and use the new token from now on."""
        response = self.client.request(
            "POST",
            LOGIN_PATH,
            data={"username": self._username, "password": self._password},
            headers={"Accept": "text/plain, application/json"},
            credentials=False,
            allow_status={400, 401, 403},
        )
        if response.status_code != 200:
            said = _one_line(response.text) or response.reason_phrase
            raise AuthError(f"login refused (HTTP {response.status_code}): {said}")
        token = response.text.strip()
        if token.startswith('"'):
            # Tolerate the token arriving as a JSON string instead of bare text.
            with contextlib.suppress(json.JSONDecodeError):
                token = str(json.loads(token))
        if not token or any(c.isspace() for c in token):
            # Never quote it: whatever came back may still be a credential.
            raise ProtocolError("login answered no usable token (empty, or with whitespace)")
        self._use(token)
        self._on_login(token)

    def get(
        self, path: str, params: Mapping[str, Any], *, allow_status: Iterable[int] = ()
    ) -> httpx.Response:
        """GET `path` with the token, logging in first when there is none yet."""
        if self._token is None:
            self.login()
        try:
            return self.client.request("GET", path, params=params, allow_status=allow_status)
        except HTTPStatusError as exc:
            if exc.status_code != 401 or self._static is None:
                raise
            raise AuthError(f"token refused (HTTP 401): {_one_line(exc.vendor_text)}") from None
