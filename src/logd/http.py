"""The one HTTP client a source gets: bound to its base URL, retrying, credential-pinned.

Retries (tenacity) cover what a later attempt can fix: transport errors, 408, 429 and 5xx.
They back off exponentially with jitter, honour `Retry-After` (seconds or an HTTP date,
capped at the configured maximum wait) and give up after the configured attempts with an
error naming the URL and the vendor's own error text.

Credentials are headers set with `set_credentials()`; they are attached only to requests whose
scheme, host and port equal the configured base URL's. Redirects are followed by hand so that
a hop to another origin goes without them. A provider whose credential is a login session
registers its login with `set_login()`: a 401 then means one fresh login and one more try.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
import tenacity

from .__about__ import __version__
from .errors import AuthError, HTTPStatusError, ProtocolError, TransportError
from .paging import PagingError

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_REDIRECTS = 5
#: The same GET (method, URL, parameters) asked this many times in one poll is refused: the
#: vendor's paging is going round in circles. Legitimate re-fetches stay well below it (Pegasus
#: finding its place again reads offset 0 up to three times; an Akinon follow-up once a poll).
REPEAT_LIMIT = 5
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19

log = logging.getLogger("logd.http")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 60.0


def origin(url: str | httpx.URL) -> tuple[str, str, int]:
    """Scheme, host and effective port of a URL: what credentials are pinned to."""
    parsed = httpx.URL(str(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host, port


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user info, safe to show in an error."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def vendor_error_text(response: httpx.Response, limit: int = 300) -> str:
    """The vendor's own words from an error response: JSON:API errors, a message field, or text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if isinstance(err, dict):
                    title, detail = err.get("title"), err.get("detail")
                    parts.append(": ".join(str(p) for p in (title, detail) if p))
                else:
                    parts.append(str(err))
            return "; ".join(p for p in parts if p)[:limit]
        for key in ("detail", "message", "error", "errorMessage", "error_description", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:limit]
    text = " ".join(response.text.split())
    return text[:limit] or response.reason_phrase


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, from `Retry-After` as seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every client shares, made once per process.

    httpx builds one per client by default, and reading the CA bundle into it costs ~20 ms of
    CPU: most of what an idle poll costs, since each poll gets a client of its own.
    """
    return httpx.create_ssl_context()


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class SourceClient:
    """HTTP for one source: `request`, `get_json`, `stream`; never more than this to providers."""

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[], None] | None = None,
        repeat_limit: int = REPEAT_LIMIT,
    ) -> None:
        self.source = source
        self.repeat_limit = repeat_limit
        #: GET requests asked for (retries not counted) and the last request, for the
        #: engine's paging checks (paging.py); the client lives for one poll.
        self.gets = 0
        self.last_request = "none"
        self._asked: dict[int, int] = {}
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.max_response_bytes = max_response_bytes
        self.requests = 0
        self.retries = 0
        #: How to read an error body; a provider may replace it for an unusual error format.
        self.error_text: Callable[[httpx.Response], str] = vendor_error_text
        self._sleep = sleep
        self._on_retry = on_retry
        self._origin = origin(self.base_url)
        self._credentials: dict[str, str] = {}
        self._login: Callable[[], None] | None = None
        self._http = httpx.Client(
            verify=tls_context(),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": f"logd/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<SourceClient {self.source} {self.base_url}>"

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- credentials ------------------------------------------------------------------------

    def set_credentials(self, headers: Mapping[str, str]) -> None:
        """Headers sent only to the base URL's origin (replaces earlier ones)."""
        self._credentials = dict(headers)

    def set_login(self, login: Callable[[], None] | None) -> None:
        """How to get fresh credentials: on a 401 the client calls it once and repeats the request.

        `login` does the vendor's login (with `credentials=False`) and calls `set_credentials`.
        A second 401 right after it is an `AuthError` with the vendor's text.
        """
        self._login = login

    def same_origin(self, url: str | httpx.URL) -> bool:
        """True when `url` has the configured base URL's scheme, host and port."""
        return origin(url) == self._origin

    def url(self, path: str) -> str:
        """An absolute URL: `path` under the base URL, or `path` itself when absolute."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    @staticmethod
    def query_params(url: str, keep: Iterable[str] | None = None) -> dict[str, str]:
        """Query parameters of a (`next`) link, optionally only those named in `keep`."""
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        if keep is not None:
            wanted = set(keep)
            params = {k: v for k, v in params.items() if k in wanted}
        return params

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        credentials: bool = True,
        allow_status: Iterable[int] = (),
    ) -> httpx.Response:
        """Send a request with retries; raise `HTTPStatusError` unless 2xx or in `allow_status`."""
        allowed = set(allow_status)
        url = self.url(path)
        self._count(method, url, params)

        def attempt() -> httpx.Response:
            response = self._send(method, url, params, json, data, headers, credentials)
            if response.status_code in RETRY_STATUSES and response.status_code not in allowed:
                raise _RetryableStatus(response)
            return response

        def send() -> httpx.Response:
            try:
                # Most requests succeed at once: only a failed first attempt pays for
                # tenacity's machinery (a fifth of this client's own cost per request).
                return attempt()
            except (_RetryableStatus, httpx.TransportError) as exc:
                first: BaseException | None = exc

            def replay() -> httpx.Response:
                # Tenacity sees the first failure as its attempt 1: same waits, same count.
                nonlocal first
                if first is not None:
                    failed, first = first, None
                    raise failed
                return attempt()

            try:
                return self._retrying()(replay)
            except _RetryableStatus as exc:
                raise self._status_error(exc.response, gave_up=True) from None
            except httpx.TransportError as exc:
                raise TransportError(
                    f"{method} {redact_url(url)} failed after {self.retry.attempts} attempts: "
                    f"{type(exc).__name__}: {exc or 'no answer'}"
                ) from None

        response = send()
        if (
            response.status_code == 401
            and 401 not in allowed
            and credentials
            and self._login is not None
            and self.same_origin(url)
        ):
            # A login session ended (they expire while idle): one fresh login, one more try.
            log.info("%s: %s refused the session; logging in again", self.source, redact_url(url))
            self._login()
            response = send()
            if response.status_code == 401:
                raise AuthError(
                    f"{method} {redact_url(url)} -> HTTP 401 right after a fresh login: "
                    f"{self.error_text(response)}"
                )
        if response.is_success or response.status_code in allowed:
            return response
        raise self._status_error(response, gave_up=False)

    def _count(self, method: str, url: str, params: Mapping[str, Any] | None) -> None:
        """Count a request of this poll; the `repeat_limit`-th identical GET is a `PagingError`."""
        shown = redact_url(url)
        if params:
            shown += ("&" if "?" in shown else "?") + urlencode(
                [(k, str(v)) for k, v in params.items()]
            )
        self.last_request = f"{method} {shown}"
        if method != "GET":
            return  # POSTs repeat by design (an export's status, asked until it is ready)
        self.gets += 1
        key = hash((url, tuple(sorted((str(k), str(v)) for k, v in (params or {}).items()))))
        seen = self._asked.get(key, 0) + 1
        self._asked[key] = seen
        if seen >= self.repeat_limit:
            raise PagingError(
                f"paging does not advance: {self.last_request} asked {seen} times in one poll; "
                "the poll stopped and what it stored is kept"
            )

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET and decode JSON; invalid JSON is a `ProtocolError` naming the URL."""
        return self.json(self.request("GET", path, **kwargs))

    def post_json(self, path: str, **kwargs: Any) -> Any:
        """POST and decode JSON."""
        return self.json(self.request("POST", path, **kwargs))

    @staticmethod
    def json(response: httpx.Response) -> Any:
        """Decode a response body as JSON or raise `ProtocolError`."""
        body = response.content
        # orjson decodes a page in 40 % of the stdlib's instructions, but reads integers past
        # 64 bits as floats. Those take 19 digits or more, so a body with such a run of digits
        # (anywhere, even in a string) and anything orjson refuses (NaN, not UTF-8) goes to
        # the stdlib: the result is always what json.loads gives.
        if _LONG_DIGITS not in body.translate(_DIGITS_TO_ZERO):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            snippet = " ".join(response.text[:80].split())
            raise ProtocolError(
                f"invalid JSON from {response.request.method} {redact_url(response.request.url)}"
                f" ({exc}): {snippet!r}"
            ) from None

    @contextmanager
    def stream(
        self, url: str, *, credentials: bool = False, chunk_size: int = 64 * 1024
    ) -> Iterator[Iterator[bytes]]:
        """GET a large body chunk by chunk (no size cap); without credentials unless asked.

        Retries cover getting the response; once bytes flow, an interruption is an error.
        """
        full = self.url(url)

        def attempt() -> httpx.Response:
            response = self._open(full, credentials)
            if response.status_code in RETRY_STATUSES:
                response.read()
                response.close()
                raise _RetryableStatus(response)
            return response

        try:
            response = self._retrying()(attempt)
        except _RetryableStatus as exc:
            raise self._status_error(exc.response, gave_up=True) from None
        except httpx.TransportError as exc:
            raise TransportError(f"GET {redact_url(full)} failed: {exc}") from None
        try:
            if not response.is_success:
                response.read()
                raise self._status_error(response, gave_up=False)
            yield response.iter_bytes(chunk_size)
        except httpx.TransportError as exc:
            raise TransportError(f"GET {redact_url(full)} broke off: {exc}") from None
        finally:
            response.close()

    # -- internals --------------------------------------------------------------------------

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.retry.attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_RetryableStatus, httpx.TransportError)),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus):
            asked = retry_after_seconds(exc.response)
            if asked is not None:
                return min(asked, self.retry.max_wait)
        backoff = self.retry.initial_wait * 2 ** (state.attempt_number - 1)
        return float(min(self.retry.max_wait, backoff) * random.uniform(0.5, 1.0))

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        if self._on_retry:
            self._on_retry()
        exc = state.outcome.exception() if state.outcome else None
        what = f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus) else exc
        wait = state.next_action.sleep if state.next_action else 0
        log.info("%s: %s, retry %d in %.1fs", self.source, what, state.attempt_number, wait)

    def _open(self, url: str, credentials: bool, **kwargs: Any) -> httpx.Response:
        """Send with manual redirects, streaming the final response; the caller closes it."""
        method = kwargs.pop("method", "GET")
        extra_headers = dict(kwargs.pop("headers", None) or {})
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(extra_headers)
            if credentials and self.same_origin(url):
                headers.update(self._credentials)
            request = self._http.build_request(method, url, headers=headers, **kwargs)
            self.requests += 1
            response = self._http.send(request, stream=True)
            if not response.is_redirect:
                return response
            response.close()
            url = str(response.next_request.url) if response.next_request else url
            # A 303 (and, by browser custom, 301/302 after POST) turns into a bodiless GET.
            if response.status_code == 303 or method == "POST":
                method, kwargs = "GET", {}
            log.debug("%s: redirected to %s", self.source, redact_url(url))
        raise ProtocolError(f"too many redirects from {redact_url(url)}")

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        credentials: bool,
    ) -> httpx.Response:
        response = self._open(
            url,
            credentials,
            method=method,
            params=params,
            json=json_body,
            data=data,
            headers=headers,
        )
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.max_response_bytes:
                    raise ProtocolError(
                        f"{method} {redact_url(response.request.url)}: response larger than "
                        f"{self.max_response_bytes} bytes"
                    )
        finally:
            response.close()
        # The body is already decoded: drop the headers that describe the wire form.
        wire_free = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=wire_free,
            content=bytes(body),
            request=response.request,
        )

    def _status_error(self, response: httpx.Response, *, gave_up: bool) -> HTTPStatusError:
        request = response.request
        text = self.error_text(response)
        after = f" (gave up after {self.retry.attempts} attempts)" if gave_up else ""
        return HTTPStatusError(
            f"{request.method} {redact_url(request.url)} -> HTTP {response.status_code}: "
            f"{text}{after}",
            status_code=response.status_code,
            url=redact_url(request.url),
            vendor_text=text,
        )
