"""The one HTTP client a source gets: bound to its base URL, retrying, bounded, credential-pinned.

Retries (tenacity) cover what a later attempt can fix: transport errors (every
`httpx.RequestError`: no connection, a reset, a timeout, a body that does not match its
`Content-Encoding`, a redirect loop), 408, 429 and 5xx. They back off exponentially with
jitter, honour `Retry-After` (seconds or an HTTP date, capped at the configured maximum wait)
and give up after the configured attempts with an error naming the URL and the vendor's own
error text. A first attempt that succeeds never enters tenacity.

Bounds, whatever the server sends:

- Time: `timeout` bounds one whole attempt (connect, send, headers, body), not each read: every
  socket operation waits at most what is left of it (`logd.deadline`), so a server dripping
  one byte a second fails after `timeout` seconds. `stream()` (a file download) waits at most
  `timeout` for each piece of data and `download_timeout` for the whole body, and fails when
  fewer than `LOW_SPEED_LIMIT` bytes a second arrive over any `timeout`-long stretch (a drip).
- Memory: a response body (decoded) larger than `max_response_bytes` is a `ProtocolError`
  naming the URL and the source's `max_response_size` key; decompression yields bounded pieces,
  so a compressed bomb never inflates past the cap. Only gzip and deflate are asked for.

Credentials are pinned to the configured base URL's scheme, host and port, on every hop:

- headers set with `set_credentials()` go only there;
- cookies are kept only from responses of that origin and sent only back to it (httpx's own
  jar would send them to any port of the host, so it is replaced by one that keeps nothing);
- redirects are followed by hand: 307/308 keep method and body, 301/302 turn a POST into a GET,
  303 turns anything but HEAD into a GET (RFC 9110 §15.4); a request body (a login form or
  JSON that is itself a credential) is re-sent only to the origin it was first sent to: a
  redirect taking it elsewhere is a `ProtocolError` naming both origins.

Rate: with a `budget` (ratelimit.py, the source's rate group), every request first waits for
its place under `max_rate` and the vendor's `RateLimit-*`/`X-RateLimit-*` counters; a 429 or
503 with `Retry-After` pauses the whole group. The wait is the source's interruptible sleep and
comes before the request's deadline starts.

A provider whose credential is a login session registers its login with `set_login()`: a 401
then means one fresh login and one more try. Vendor error text is masked (`logd.redact`) with
the poll's secrets and the credential headers BEFORE it is cut short; no error, repr or log
line carries a header value.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
import tenacity

from logd import redact
from logd.__about__ import __version__
from logd.engine.paging import PagingError
from logd.errors import AuthError, HTTPStatusError, ProtocolError, SourceError, TransportError
from logd.plugin.deadline import Deadline
from logd.plugin.deadline import transport as deadline_transport
from logd.plugin.ratelimit import Budget

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_REDIRECTS = 5
#: The same GET (method, URL, parameters) asked this many times in one poll is refused: the
#: vendor's paging is going round in circles. Legitimate re-fetches stay well below it (Pegasus
#: finding its place again reads offset 0 up to three times; an Akinon follow-up once a poll).
REPEAT_LIMIT = 5
#: Largest decoded response body. A page of tiny JSON records decodes into about nine times
#: its size in Python objects: 4 MiB peaks near 100 MB RSS, inside the 150 MB budget, and is
#: 20 times the largest real page (100 records, 50 to 200 KB).
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: Longest a `stream()` download may take in all (each wait for data is `timeout`).
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0
#: Slowest a `stream()` download may run, in wire bytes per second over each `timeout`-long
#: stretch (curl's low-speed limit): a server dripping a byte at a time never makes one wait
#: last `timeout`, and would otherwise hold the poll for all of `download_timeout`.
LOW_SPEED_LIMIT = 1024
#: Most decompressed bytes produced per step: bounds memory whatever the compression ratio.
INFLATE_STEP = 256 * 1024
#: What logd can decode itself with a bound on the output.
ACCEPT_ENCODING = "gzip, deflate"

_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19
#: Credential headers by name: their values are masked (an id such as `Fleet-Id: 12` is not).
_SECRET_HEADER = re.compile(r"auth|token|key|secret|session|cookie|password|signature", re.I)
#: Cookies are credentials of the configured origin; values this long are masked in logs.
_SESSION_COOKIE_LENGTH = 16

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


def show_origin(url: str | httpx.URL) -> str:
    """`scheme://host:port` of a URL, for messages."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user info, safe to show in an error."""
    try:
        parts = urlsplit(str(url))
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:  # a port that is not a number: show no authority at all
        return "<unparseable URL>"
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


class _NoCookies(DefaultCookiePolicy):
    """httpx's client jar keeps nothing: cookie rules ignore ports, ours must not."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        """Never store."""
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        """Never send."""
        return False


def _is_zlib_header(head: bytes) -> bool:
    """True when `head` starts with a zlib header (RFC 1950), not raw deflate data."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _inflate(chunks: Iterator[bytes], coding: str, request: httpx.Request) -> Iterator[bytes]:
    """Decompressed `chunks`, at most `INFLATE_STEP` bytes at a time; httpx.DecodingError."""
    if coding in ("gzip", "x-gzip"):
        wbits: int | None = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = None  # zlib-wrapped as RFC 9110 says, or raw as some servers send it
    else:
        raise httpx.DecodingError(
            f"Content-Encoding {coding!r}, which logd does not ask for ({ACCEPT_ENCODING})",
            request=request,
        )
    decompressor = None
    head = b""
    try:
        for chunk in chunks:
            data = chunk
            if decompressor is None:
                head += data
                if wbits is None and len(head) < 2:
                    continue
                if wbits is None:
                    wbits = zlib.MAX_WBITS if _is_zlib_header(head) else -zlib.MAX_WBITS
                decompressor, data = zlib.decompressobj(wbits), head
            while data and not decompressor.eof:
                out = decompressor.decompress(data, INFLATE_STEP)
                if out:
                    yield out
                data = decompressor.unconsumed_tail
        if decompressor is None and head:
            decompressor = zlib.decompressobj(wbits or -zlib.MAX_WBITS)
            yield decompressor.decompress(head, INFLATE_STEP)
        if decompressor is not None and not decompressor.eof:
            tail = decompressor.flush(INFLATE_STEP)
            if tail:
                yield tail
            if not decompressor.eof:
                raise httpx.DecodingError(f"{coding} body ends early", request=request)
    except zlib.error as exc:
        raise httpx.DecodingError(
            f"body does not match its Content-Encoding {coding}: {exc}", request=request
        ) from None


def _decoded(response: httpx.Response, raw: Iterator[bytes]) -> Iterator[bytes]:
    """The body of `response` from its `raw` wire chunks, undoing `Content-Encoding`."""
    header = response.headers.get("content-encoding")
    if not header:
        return raw
    codings = [c.strip().lower() for c in header.split(",")]
    for coding in reversed(codings):
        if coding and coding != "identity":
            raw = _inflate(raw, coding, response.request)
    return raw


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
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[], None] | None = None,
        repeat_limit: int = REPEAT_LIMIT,
        secrets: list[str] | None = None,
        budget: Budget | None = None,
        stopping: Callable[[], bool] = lambda: False,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.source = source
        self.repeat_limit = repeat_limit
        #: GET requests asked for (retries not counted) and the last request, for the
        #: engine's paging checks (paging.py); the client lives for one poll.
        self.gets = 0
        self.last_request = "none"
        self._asked: dict[int, int] = {}
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_response_bytes = max_response_bytes
        self.download_timeout = download_timeout
        self.requests = 0
        self.retries = 0
        #: The rate group's budget every request waits on (ratelimit.py); None: no waiting.
        self.budget = budget
        #: Seconds this client's requests waited on the budget, in all.
        self.rate_waited = 0.0
        self._stopping = stopping
        self._on_wait = on_wait
        #: How to read an error body; a provider may replace it for an unusual error format.
        #: It is given the response with every secret already masked.
        self.error_text: Callable[[httpx.Response], str] = vendor_error_text
        self._sleep = sleep
        self._on_retry = on_retry
        self._origin = origin(self.base_url)
        # The poll's secrets (shared with its context, so it grows as a provider logs in).
        self._secrets = secrets if secrets is not None else []
        self._credentials: dict[str, str] = {}
        self._credential_values: list[str] = []
        self._cookies = httpx.Cookies()  # the configured origin's, and only ever sent there
        self._login: Callable[[], None] | None = None
        self._deadline = Deadline()
        self._deadline_hit = False  # the last timeout was the attempt's deadline, not a read's
        self._stalled = False  # the last stream() stopped under LOW_SPEED_LIMIT
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={
                "User-Agent": f"logd/{__version__}",
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            cookies=CookieJar(policy=_NoCookies()),
            follow_redirects=False,
            transport=transport or deadline_transport(self._deadline),
        )

    def __repr__(self) -> str:
        return f"<SourceClient {self.source} {redact_url(self.base_url)}>"

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- credentials ------------------------------------------------------------------------

    def set_credentials(self, headers: Mapping[str, str]) -> None:
        """Headers sent only to the base URL's origin (replaces earlier ones).

        Values of headers named like a credential (`Authorization`, `X-Api-Key`, …) are masked
        in every error and log line; others (a `Fleet-Id`) only travel with them.
        """
        self._credentials = dict(headers)
        values: list[str] = []
        for name, value in headers.items():
            if not _SECRET_HEADER.search(name):
                continue
            values += redact.header_secrets(value)  # `Bearer <token>`: the token alone too
        self._credential_values = values
        redact.register(*values)

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

    def mask(self, text: str) -> str:
        """`text` with the poll's secrets and the credential headers masked (`logd.redact`)."""
        return redact.mask(text, [*self._secrets, *self._credential_values])

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
            except (_RetryableStatus, httpx.RequestError) as exc:
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
            except httpx.RequestError as exc:
                raise TransportError(
                    f"{method} {redact_url(url)} failed after {self.retry.attempts} attempts: "
                    f"{self._describe(exc)}"
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
                    f"{self.error_text(self._masked(response))}"
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

    def json(self, response: httpx.Response) -> Any:
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
            # Masked whole, then cut: a secret across the cut would keep its prefix.
            snippet = " ".join(self.mask(response.text[:4096]).split())[:80]
            raise ProtocolError(
                f"invalid JSON from {response.request.method} {redact_url(response.request.url)}"
                f" ({exc}): {snippet!r}"
            ) from None

    @contextmanager
    def stream(
        self, url: str, *, credentials: bool = False, chunk_size: int = 64 * 1024
    ) -> Iterator[Iterator[bytes]]:
        """GET a large body piece by piece (no size cap); without credentials unless asked.

        Retries cover getting the response; once bytes flow, an interruption is an error.
        Each wait for data lasts at most `timeout`, the whole download `download_timeout`, and
        a download slower than `LOW_SPEED_LIMIT` bytes/s over any `timeout` seconds stops.
        `chunk_size` is the most one piece holds (pieces come as the network delivers them).
        """
        full = self.url(url)
        # A signed URL (a vendor's file link) authorizes by its query: mask it like a secret.
        signed = redact.url_secrets(full)
        self._secrets.extend(v for v in signed if v not in self._secrets)
        redact.register(*signed)
        finish_by = time.monotonic() + self.download_timeout

        def attempt() -> httpx.Response:
            if self.budget is not None:
                self._wait_for_budget("GET", full)
            until = min(finish_by, time.monotonic() + self.timeout)
            response = self._open("GET", full, credentials=credentials, until=until)
            if response.status_code in RETRY_STATUSES or not response.is_success:
                failed = self._buffer(response, "GET", until)
                if failed.status_code in RETRY_STATUSES:
                    raise _RetryableStatus(failed)
                raise self._status_error(failed, gave_up=False)
            return response

        try:
            response = self._retrying()(attempt)
        except _RetryableStatus as exc:
            raise self._status_error(exc.response, gave_up=True) from None
        except httpx.RequestError as exc:
            raise TransportError(f"GET {redact_url(full)} failed: {self._describe(exc)}") from None
        self._stalled = False
        try:
            yield self._body(response, finish_by, chunk_size, low_speed=True)
        except httpx.RequestError as exc:
            if self._stalled:
                what = (
                    f"stalled: under {LOW_SPEED_LIMIT} bytes/s for {self.timeout:g}s (the "
                    "source's timeout)"
                )
            elif time.monotonic() >= finish_by:
                what = (
                    f"took longer than the source's download_timeout ({self.download_timeout:g}s)"
                )
            else:
                what = f"broke off: {self._describe(exc)}"
            raise TransportError(f"GET {redact_url(full)} {what}") from None
        finally:
            response.close()

    # -- internals --------------------------------------------------------------------------

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.retry.attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_RetryableStatus, httpx.RequestError)),
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
        if isinstance(exc, _RetryableStatus):
            what = f"HTTP {exc.response.status_code}"
        elif isinstance(exc, httpx.RequestError):
            what = self._describe(exc, kind=False)  # a retry is not an error yet
        else:
            what = self.mask(str(exc))
        wait = state.next_action.sleep if state.next_action else 0
        log.info("%s: %s, retry %d in %.1fs", self.source, what, state.attempt_number, wait)

    def _describe(self, exc: httpx.RequestError, *, kind: bool = True) -> str:
        """What went wrong, in words that never carry a header value; `kind`: the class too."""
        if isinstance(exc, httpx.LocalProtocolError):
            # h11 quotes the offending header (a credential, often) in its message.
            return "the request could not be sent as written (a header with a control character?)"
        if isinstance(exc, httpx.TimeoutException) and self._deadline_hit:
            return f"no complete answer within the source's timeout ({self.timeout:g}s)"
        if not kind and str(exc):
            return self.mask(str(exc))
        return self.mask(f"{type(exc).__name__}: {exc or 'no answer'}")

    def _open(
        self,
        method: str,
        url: str,
        *,
        credentials: bool,
        until: float,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with manual redirects, streaming the final response; the caller closes it."""
        first = url
        has_body = json_body is not None or data is not None
        self._deadline_hit = False
        for hop in range(MAX_REDIRECTS + 1):
            same = self.same_origin(url)
            hop_headers = dict(headers or {})
            if credentials and same:
                hop_headers.update(self._credentials)
            try:
                request = self._http.build_request(
                    method, url, params=params, json=json_body, data=data, headers=hop_headers
                )
            except httpx.InvalidURL as exc:
                raise ProtocolError(
                    f"{method} {redact_url(url)}: not a usable URL: {exc}"
                ) from None
            if same and self._cookies.jar:
                self._cookies.set_cookie_header(request)
            if self.budget is not None and hop:  # the first hop waited before its deadline
                self._wait_for_budget(method, url)
            self.requests += 1
            try:
                with self._deadline.until(until):
                    response = self._http.send(request, stream=True)
            except httpx.TimeoutException:
                self._deadline_hit = time.monotonic() >= until
                raise
            if same and "set-cookie" in response.headers:
                self._keep_cookies(response)
            if self.budget is not None:
                self._heed_limits(response)
            if not response.is_redirect:
                return response
            response.close()
            try:
                target = request.url.join(response.headers["location"])
            except httpx.InvalidURL as exc:
                raise ProtocolError(
                    f"{method} {redact_url(url)}: redirect to an unusable URL: {exc}"
                ) from None
            if target.scheme not in ("http", "https"):
                raise ProtocolError(
                    f"{method} {redact_url(url)}: redirect to a {target.scheme or 'relative'} URL"
                )
            status = response.status_code
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, json_body, data, has_body = "GET", None, None, False
            elif has_body and origin(target) != origin(first):
                # The body may be the credential itself (a client_secret form, a login JSON).
                raise ProtocolError(
                    f"{method} {redact_url(first)}: HTTP {status} redirect would re-send the "
                    f"request body from {show_origin(first)} to {show_origin(target)}; "
                    "a body goes only to its own origin"
                )
            params = None  # the Location is a whole URL, query included
            url = str(target)
            log.debug("%s: HTTP %d, redirected to %s", self.source, status, redact_url(url))
        raise httpx.TooManyRedirects(
            f"more than {MAX_REDIRECTS} redirects from {redact_url(first)}", request=request
        )

    def _wait_for_budget(self, method: str, url: str) -> None:
        """Wait for the rate group's next free place (interruptible by shutdown)."""
        assert self.budget is not None
        wait = self.budget.reserve(by=self)
        if wait <= 0:
            self.budget.sent()
            return
        self.rate_waited += wait
        self.budget.waited += wait
        if wait >= 1:
            log.info(
                "%s: rate limited (group %s), resuming in %.0f s",
                self.source,
                self.budget.name,
                wait,
            )
        if self._on_wait is not None:
            self._on_wait(wait)
        self._sleep(wait)
        if self._stopping():
            raise SourceError(
                f"{method} {redact_url(url)}: stopped while waiting on the rate budget"
            )
        self.budget.sent()

    def _heed_limits(self, response: httpx.Response) -> None:
        """Let the vendor's counters and a 429/503 `Retry-After` slow the whole group down."""
        assert self.budget is not None
        headers = response.headers
        self.budget.observe(headers)
        if response.status_code in (429, 503):
            asked = retry_after_seconds(response)
            if asked is not None:
                self.budget.pause(min(asked, self.retry.max_wait), by=self)

    def _keep_cookies(self, response: httpx.Response) -> None:
        """Store the configured origin's cookies; long values are credentials to mask."""
        self._cookies.extract_cookies(response)
        redact.register(
            *(
                c.value
                for c in self._cookies.jar
                if c.value and len(c.value) >= _SESSION_COOKIE_LENGTH
            )
        )

    def _body(
        self,
        response: httpx.Response,
        until: float,
        chunk_size: int | None = None,
        *,
        low_speed: bool = False,
    ) -> Iterator[bytes]:
        """The decoded body of a streamed `response`, piece by piece, within the deadline."""
        if response.is_stream_consumed:  # built in memory and decoded already (MockTransport)
            return iter((response.content,))
        return _decoded(response, self._raw(response, until, chunk_size, low_speed=low_speed))

    def _raw(
        self,
        response: httpx.Response,
        until: float,
        chunk_size: int | None = None,
        *,
        low_speed: bool = False,
    ) -> Iterator[bytes]:
        """Wire chunks of `response`, each read bounded by the deadline `until`.

        With `low_speed`, pieces come as read (httpx's chunker would hold a drip back, and
        with it every check here) and fewer than `LOW_SPEED_LIMIT` bytes/s over a stretch
        of `timeout` seconds is a `ReadTimeout` (`_stalled` set).
        """
        chunks = response.iter_raw(None if low_speed else chunk_size)
        stretch_start, stretch_bytes = time.monotonic(), 0
        while True:
            try:
                with self._deadline.until(until):
                    chunk = next(chunks, None)
            except httpx.TimeoutException:
                self._deadline_hit = time.monotonic() >= until
                raise
            if chunk is None:
                return
            now = time.monotonic()
            if now > until:  # a transport without our sockets (tests, proxies)
                self._deadline_hit = True
                raise httpx.ReadTimeout("the request's deadline passed", request=response.request)
            if low_speed:
                stretch_bytes += len(chunk)
                spent = now - stretch_start
                if spent >= self.timeout:
                    if stretch_bytes < LOW_SPEED_LIMIT * spent:
                        self._stalled = True
                        raise httpx.ReadTimeout("the download stalled", request=response.request)
                    stretch_start, stretch_bytes = now, 0
                if chunk_size and len(chunk) > chunk_size:
                    for at in range(0, len(chunk), chunk_size):
                        yield chunk[at : at + chunk_size]
                    continue
            yield chunk

    def _buffer(self, response: httpx.Response, method: str, until: float) -> httpx.Response:
        """Read the body of a streamed `response` (at most `max_response_bytes`) and close it."""
        cap = self.max_response_bytes
        try:
            length = response.headers.get("content-length", "")
            if (
                length.isdigit()
                and int(length) > cap
                and "content-encoding" not in response.headers
            ):
                raise self._too_large(method, response.request.url, f"{int(length)} bytes")
            body = bytearray()
            for chunk in self._body(response, until):
                body += chunk
                if len(body) > cap:
                    raise self._too_large(method, response.request.url, f"more than {cap} bytes")
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

    def _too_large(self, method: str, url: httpx.URL, size: str) -> ProtocolError:
        return ProtocolError(
            f"{method} {redact_url(url)}: response of {size} is over the limit of "
            f"{self.max_response_bytes} bytes; raise max_response_size for source "
            f"{self.source} if the vendor's pages are really this large"
        )

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
        if self.budget is not None:
            self._wait_for_budget(method, url)
        until = time.monotonic() + self.timeout  # one whole attempt, body included
        response = self._open(
            method,
            url,
            credentials=credentials,
            until=until,
            params=params,
            json_body=json_body,
            data=data,
            headers=headers,
        )
        return self._buffer(response, method, until)

    def _masked(self, response: httpx.Response) -> httpx.Response:
        """`response` with every secret masked in its body, for error text that is cut short."""
        text = response.text
        masked = self.mask(text)
        if masked == text:
            return response
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-type", "content-length")
        ]
        kind = response.headers.get("content-type", "text/plain").split(";")[0]
        headers.append(("content-type", f"{kind}; charset=utf-8"))
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=masked.encode(),
            request=response.request,
        )

    def _status_error(self, response: httpx.Response, *, gave_up: bool) -> HTTPStatusError:
        request = response.request
        text = self.error_text(self._masked(response))
        after = f" (gave up after {self.retry.attempts} attempts)" if gave_up else ""
        return HTTPStatusError(
            f"{request.method} {redact_url(request.url)} -> HTTP {response.status_code}: "
            f"{text}{after}",
            status_code=response.status_code,
            url=redact_url(request.url),
            vendor_text=text,
        )
