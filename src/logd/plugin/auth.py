"""How a provider authenticates: a static token, or a login session kept between polls.

Both put a token into request headers with the client's `set_credentials` (pinned to the
source's origin, masked in every message) and add it to the poll's secrets::

    class Acme(Provider[AcmeOptions]):
        def __init__(self) -> None:
            # On the instance: the engine keeps it between polls, so an idle poll reuses it.
            self.session = LoginSession(self._login, header="X-Session", prefix="")

        def _login(self, ctx: PollContext[AcmeOptions]) -> Token:
            body = ctx.client.post_json("/login", json={...}, credentials=False)
            return Token(body["token"], expires_in=body.get("ttl"))

        def poll(self, ctx: PollContext[AcmeOptions]) -> Iterator[Batch]:
            auth = BearerToken(ctx.options.token.get_secret_value()) if ctx.options.token \
                else self.session
            auth.apply(ctx)
            with auth.authenticated():
                body = ctx.client.get_json("/logs")

`LoginSession` logs in when it has no token or the token is about to expire, and registers
itself with `SourceClient.set_login`: a 401 means one fresh login and one retry, a second 401
an `AuthError`. A refused `BearerToken` is an `AuthError` at once (no login can fix it).
Tokens live in memory only: never in the cursor, which sits in plain SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from logd.errors import AuthError, HTTPStatusError
from logd.plugin.provider import PollContext

#: Builds the credential headers from a token.
Headers = Callable[[str], Mapping[str, str]]


def in_header(header: str = "Authorization", prefix: str = "Bearer ") -> Headers:
    """Headers carrying the token in one header after `prefix` (`Authorization: Bearer <t>`)."""
    return lambda token: {header: f"{prefix}{token}"}


@dataclass(frozen=True)
class Token:
    """A token a login returned; `expires_in` is seconds from issue (None: until refused)."""

    value: str
    expires_in: float | None = None


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


class BearerToken:
    """A configured token sent in a header on every request; a 401 is an `AuthError`."""

    def __init__(
        self,
        token: str,
        *,
        header: str = "Authorization",
        prefix: str = "Bearer ",
        headers: Headers | None = None,
        refused: str = "the token was refused",
    ) -> None:
        self._token = token
        self._headers = headers or in_header(header, prefix)
        self._refused = refused

    def __repr__(self) -> str:
        return "<BearerToken ***>"

    def apply(self, ctx: PollContext[Any]) -> None:
        """Send the token with this poll's requests (origin-pinned, masked)."""
        ctx.add_secret(self._token)
        ctx.client.set_login(None)
        ctx.client.set_credentials(self._headers(self._token))

    @contextmanager
    def authenticated(self) -> Iterator[None]:
        """Inside: an HTTP 401 is an `AuthError` "`refused` (HTTP 401): vendor text"."""
        try:
            yield
        except HTTPStatusError as exc:
            if exc.status_code != 401:
                raise
            raise AuthError(f"{self._refused} (HTTP 401): {_one_line(exc.vendor_text)}") from None


class LoginSession:
    """A token from `login(ctx)`, kept between polls and renewed before expiry or on a 401.

    `refresh_margin` seconds before a token's expiry a new one is fetched (never sooner than
    half its lifetime, so a large margin cannot mean a login per request). `refused_again`
    prefixes the `AuthError` of a 401 that follows a fresh login, with `hint`.
    """

    def __init__(
        self,
        login: Callable[[PollContext[Any]], Token | str],
        *,
        header: str = "Authorization",
        prefix: str = "Bearer ",
        headers: Headers | None = None,
        refresh_margin: float = 0.0,
        refused_again: str | None = None,
        hint: str | None = None,
    ) -> None:
        self._login = login
        self._headers = headers or in_header(header, prefix)
        self.refresh_margin = refresh_margin
        self._refused_again = refused_again
        self._hint = hint
        self._ctx: PollContext[Any] | None = None
        # The token last handed to this poll's client: not re-sent with every request.
        self._sent: str | None = None
        #: The current token and when to renew it (None: when the vendor refuses it).
        self.token: str | None = None
        self.renew_at: datetime | None = None
        #: Logins done so far (all polls).
        self.logins = 0

    def __repr__(self) -> str:
        return f"<LoginSession {'***' if self.token else 'logged out'}>"

    def apply(self, ctx: PollContext[Any]) -> None:
        """Use this session for the poll `ctx`: a 401 logs in again once; log in if due."""
        self._ctx = ctx
        self._sent = None  # a new poll has a new client
        ctx.client.set_login(self.login)
        self.ensure()

    def ensure(self) -> None:
        """Log in when there is no token or it is due for renewal, else (re)send the kept one."""
        ctx = self._require()
        if self.token is None or (self.renew_at is not None and ctx.now() >= self.renew_at):
            self.login()
            return
        if self._sent != self.token:
            self._send(ctx, self.token)

    def login(self) -> None:
        """Log in now (the client calls this on a 401) and send the new token from now on."""
        ctx = self._require()
        now = ctx.now()
        got = self._login(ctx)
        token = got if isinstance(got, Token) else Token(got)
        self.logins += 1
        self.token = token.value
        self.renew_at = None
        if token.expires_in is not None:
            lifetime = max(token.expires_in - self.refresh_margin, token.expires_in / 2)
            self.renew_at = now + timedelta(seconds=lifetime)
        self._send(ctx, token.value)

    def _send(self, ctx: PollContext[Any], token: str) -> None:
        ctx.add_secret(token)
        ctx.client.set_credentials(self._headers(token))
        self._sent = token

    def forget(self) -> None:
        """Drop the token: the next poll logs in."""
        self.token = None
        self.renew_at = None

    @contextmanager
    def authenticated(self) -> Iterator[None]:
        """Renew a token due for it first; inside, a 401 after a fresh login is an `AuthError`."""
        self.ensure()
        if self._refused_again is None:
            yield
            return
        try:
            yield
        except AuthError as exc:
            raise AuthError(f"{self._refused_again}: {exc}", hint=self._hint) from None

    def _require(self) -> PollContext[Any]:
        if self._ctx is None:
            raise RuntimeError("LoginSession.apply(ctx) must be called at the start of a poll")
        return self._ctx


Auth = BearerToken | LoginSession
