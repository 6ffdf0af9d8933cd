"""Credentials for a source: static ones, and token sessions renewed before expiry and on 401.

Written against the provider contract only (`PollContext`, `SourceClient`), so that these
helpers can move into logd's plugin API for every provider: static credentials become the
client's origin-pinned headers, an API key in the query goes only to base_url's origin, and
a session token (OAuth 2 client credentials, a login call) lives on the provider instance in
memory, is masked in every error and log line, and is fetched again once on a 401.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from logd.errors import AuthError, HTTPStatusError, ProtocolError
from logd.plugin.provider import PollContext


@dataclass(frozen=True)
class Token:
    """A session token and when to fetch a new one (None: only when refused)."""

    value: str
    refresh_at: datetime | None = None


class Credentials:
    """Static credentials: headers pinned to base_url's origin, and query parameters."""

    def __init__(self, headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> None:
        self.headers = dict(headers)
        self.query = dict(query or {})

    def start(self, ctx: PollContext[Any]) -> None:
        """Hand the headers to the client, which sends them to base_url's origin only."""
        ctx.client.set_credentials(self.headers)

    def before_request(self, ctx: PollContext[Any]) -> None:
        """Nothing to renew."""

    def query_for(self, ctx: PollContext[Any], url: str) -> dict[str, str]:
        """Query credentials for `url`: none unless it is base_url's origin."""
        return dict(self.query) if self.query and ctx.client.same_origin(url) else {}


def bearer_header(token: str, scheme: str = "Bearer") -> str:
    """`Bearer <token>` (or the bare token for an empty scheme)."""
    return f"{scheme} {token}" if scheme else token


def basic_header(username: str, password: str) -> str:
    """`Basic base64(username:password)` (RFC 7617, UTF-8)."""
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class TokenSession(Credentials):
    """A token from a call, kept on the provider between polls, renewed early and on a 401.

    `fetch(ctx)` gets a fresh `Token` without credentials; the session sends it in `header`.
    """

    def __init__(
        self,
        fetch: Callable[[PollContext[Any]], Token],
        *,
        header: str = "Authorization",
        scheme: str = "Bearer",
    ) -> None:
        super().__init__({})
        self.fetch = fetch
        self.header = header
        self.scheme = scheme
        self.token: Token | None = None

    def start(self, ctx: PollContext[Any]) -> None:
        """Register the re-login on 401 and make sure a valid token is in place."""
        ctx.client.set_login(lambda: self._ensure(ctx, force=True))
        self._ensure(ctx)

    def before_request(self, ctx: PollContext[Any]) -> None:
        """Renew the token when it is about to expire (a long walk outlives it)."""
        self._ensure(ctx)

    def _ensure(self, ctx: PollContext[Any], *, force: bool = False) -> None:
        token = self.token
        if force or token is None or (token.refresh_at and ctx.now() >= token.refresh_at):
            token = self.token = self.fetch(ctx)
        ctx.add_secret(token.value)
        ctx.client.set_credentials({self.header: bearer_header(token.value, self.scheme)})


def refused(what: str, exc: HTTPStatusError, hint: str) -> AuthError | HTTPStatusError:
    """An `AuthError` for a credential the server refused (400/401/403), else `exc` itself."""
    if exc.status_code in (400, 401, 403):
        return AuthError(
            f"{what} refused: {exc.vendor_text} (HTTP {exc.status_code} from {exc.url})",
            hint=hint,
        )
    return exc


def client_credentials(
    token_url: str,
    client_id: str,
    client_secret: str,
    *,
    scope: str | None = None,
    basic: bool = False,
    refresh_margin: float = 60.0,
) -> Callable[[PollContext[Any]], Token]:
    """Fetch a token with the OAuth 2 client credentials grant (RFC 6749 §4.4).

    The client authenticates in the form, or with HTTP basic when `basic`; the token is
    renewed `refresh_margin` seconds before `expires_in` runs out, never more often than
    every half lifetime, and only when refused if the server gives no lifetime.
    """

    def fetch(ctx: PollContext[Any]) -> Token:
        form = {"grant_type": "client_credentials"}
        headers: dict[str, str] = {}
        if basic:
            headers["Authorization"] = basic_header(client_id, client_secret)
        else:
            form |= {"client_id": client_id, "client_secret": client_secret}
        if scope:
            form["scope"] = scope
        now = ctx.now()
        try:
            # The form is the credential: no stale Bearer header rides along.
            response = ctx.client.request(
                "POST", token_url, data=form, headers=headers, credentials=False
            )
        except HTTPStatusError as exc:
            hint = "check client_id and client_secret"
            raise refused("the client credentials were", exc, hint) from None
        body = ctx.client.json(response)
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise ProtocolError(f"{token_url} answer has no `access_token`")
        token_type = body.get("token_type")
        if token_type is not None and str(token_type).lower() != "bearer":
            raise ProtocolError(f"{token_url} issued a {token_type!r} token, not a Bearer one")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            return Token(value)  # no lifetime given: renewed when refused
        lifetime = max(float(expires_in) - refresh_margin, float(expires_in) / 2)
        return Token(value, now + timedelta(seconds=lifetime))

    return fetch


def fill(template: Any, values: Mapping[str, str]) -> Any:
    """`template` (JSON) with `{name}` in its strings replaced by `values[name]`."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def login_call(
    path: str,
    *,
    method: str = "POST",
    json: Any = None,
    form: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    token: Callable[[Any], Any] | None = None,
    where: str = "in its body",
) -> Callable[[PollContext[Any]], Token]:
    """Log in and read the session token from the answer.

    `token` reads it from the decoded JSON answer (`where` says where, for the error);
    without it the plain body is the token. A refused login is an `AuthError`.
    """

    def fetch(ctx: PollContext[Any]) -> Token:
        try:
            response = ctx.client.request(
                method, path, json=json, data=form, headers=headers, credentials=False
            )
        except HTTPStatusError as exc:
            raise refused("the login was", exc, "check username and password") from None
        value = response.text.strip() if token is None else token(ctx.client.json(response))
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise ProtocolError(f"the login answer from {path} has no token {where}")
        return Token(value)

    return fetch
