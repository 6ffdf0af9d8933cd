"""Maestra's asynchronous export: start one for a window, poll it until ready, read its errors.

Both steps are `POST /v3/operations/sync?endpointId=E&operation=O`: a body with the window
starts an export, a body `{"exportId": …}` asks how it is doing. Every answer carries a
top-level `status`; anything but `Success` is the vendor refusing, with its own words in
`errorMessage` or `validationMessages`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from logd import ProtocolError, SourceClient, SourceError
from logd.plugin.http import redact_url

from .options import MaestraOptions

PATH = "/v3/operations/sync"
VENDOR_TIME = "%Y-%m-%d %H:%M"


class MaestraError(SourceError):
    """Maestra answered with a top-level status other than `Success`."""

    def __init__(self, message: str, *, status: str, vendor_text: str) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_text = vendor_text


@dataclass(frozen=True)
class Window:
    """A minute-aligned UTC time range `[since, till)`: what one export covers."""

    since: datetime
    till: datetime

    def __str__(self) -> str:
        return f"[{vendor_time(self.since)}, {vendor_time(self.till)}) UTC"


def vendor_time(when: datetime) -> str:
    """`YYYY-MM-DD hh:mm` in UTC, the form the export API takes."""
    return when.astimezone(UTC).strftime(VENDOR_TIME)


def one_line(text: str, limit: int = 500) -> str:
    """Whitespace collapsed, so a vendor's multi-line message stays one line."""
    return " ".join(text.split())[:limit]


def describe(body: dict[str, Any]) -> str:
    """`"ValidationError: message (at location); …"` from a non-Success answer."""
    status = str(body.get("status") or "no status")
    parts: list[str] = []
    if body.get("errorMessage"):
        parts.append(str(body["errorMessage"]))
    for item in body.get("validationMessages") or []:
        if isinstance(item, dict):
            text = str(item.get("message") or "")
            location = item.get("location")
            parts.append(f"{text} (at {location})" if location else text)
        else:
            parts.append(str(item))
    return one_line(f"{status}: {'; '.join(p for p in parts if p) or 'no error message'}")


def read_errors_with(fallback: Callable[[httpx.Response], str]) -> Callable[[httpx.Response], str]:
    """An error-body reader for `SourceClient.error_text`: Maestra's status and messages first."""

    def error_text(response: httpx.Response) -> str:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and body.get("status") and body.get("status") != "Success":
            return describe(body)
        return fallback(response)

    return error_text


def start_body(options: MaestraOptions, window: Window) -> dict[str, Any]:
    """The JSON that starts an export of `window` with the configured filters."""
    body: dict[str, Any] = {
        "sinceDateTimeUtc": vendor_time(window.since),
        "tillDateTimeUtc": vendor_time(window.till),
    }
    if options.result_state is not None:
        body["resultState"] = options.result_state
    if options.has_errors is not None:
        body["hasErrors"] = options.has_errors
    if options.endpoint_external_id:
        body["endpoint"] = {"ids": {"externalId": options.endpoint_external_id}}
    if options.operations:
        body["operations"] = [{"ids": {"systemName": name}} for name in options.operations]
    return body


#: Exports a source runs at once: the vendor allows two running exports per project.
SLOTS = 2
#: The first wait between status checks of an export; each wait doubles, up to `export_poll`.
FIRST_CHECK_WAIT = 1.0


@dataclass
class Flight:
    """One export started and not yet read: when to check it next, and its parts once ready."""

    window: Window
    export_id: str
    #: Times on the exporter's clock: when it started, when to check it next.
    started: float
    due: float
    #: The wait after the next check that finds it not ready (doubles up to `export_poll`).
    pause: float
    started_at: float = 0.0  # time.monotonic() at the start, for `export_timeout`
    urls: list[str] | None = None  # set once Ready
    #: What a check of this export raised while another one was awaited: raised in turn.
    error: SourceError | None = None


class Exporter:
    """Starts and waits for exports of one source.

    Its clock is the sum of the waits it asked for (through the engine's `sleep`, instant in
    tests), so the schedule of status checks is the same on every run.
    """

    def __init__(
        self,
        client: SourceClient,
        options: MaestraOptions,
        log: logging.Logger,
        sleep: Callable[[float], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.options = options
        self.log = log
        self.sleep = sleep
        self.stopping = stopping
        self.params = {"endpointId": options.endpoint_id, "operation": options.operation}
        self.clock = 0.0

    def start(self, window: Window) -> str:
        """Start an export of `window`; its id (an existing one when Maestra says duplicate)."""
        export_id = self._start(window, spare=False)
        if export_id is None:  # pragma: no cover - without `spare`, a refusal raises
            raise ProtocolError(f"Maestra started no export of {window}")
        return export_id

    def launch(self, window: Window, *, spare: bool = False) -> Flight | None:
        """Start an export of `window` and schedule its first check (at once).

        With `spare` (another export of ours is running), a 429 is not retried: the project's
        export slots are taken (by another client, say), so None, and the caller waits for
        the export it has before starting this one.
        """
        export_id = self._start(window, spare=spare)
        if export_id is None:
            return None
        pause = min(FIRST_CHECK_WAIT, self.options.export_poll)
        return Flight(window, export_id, self.clock, self.clock, pause, time.monotonic())

    def _start(self, window: Window, *, spare: bool) -> str | None:
        what = f"starting the export of {window}"
        payload = start_body(self.options, window)
        if spare:
            response = self.client.request(
                "POST", PATH, params=self.params, json=payload, allow_status={429}
            )
            if response.status_code == 429:
                self.log.info("no free export slot for %s: it starts after the one running", window)
                return None
            body = self._answer(self.client.json(response), what)
        else:
            body = self._call(payload, what)
        export_id = body.get("exportId")
        duplicate = body.get("isDuplicate") is True
        if not isinstance(export_id, str) or not export_id:
            what = "says an export of it already exists (isDuplicate)" if duplicate else "answered"
            raise ProtocolError(f"Maestra {what} without an exportId for {window}")
        if duplicate:
            # Same parameters as an export already made (ours, from a poll that stopped
            # half-way, or a retried start): Maestra hands back that one, so follow it.
            self.log.info("export of %s already exists: continuing export %s", window, export_id)
        return export_id

    def wait_until_ready(self, export_id: str, window: Window) -> list[str]:
        """Check the export until Ready (1 s, then doubling waits up to `export_poll`)."""
        pause = min(FIRST_CHECK_WAIT, self.options.export_poll)
        flight = Flight(window, export_id, self.clock, self.clock, pause, time.monotonic())
        return self.wait_for(flight, [flight])

    def wait_for(self, head: Flight, flights: list[Flight]) -> list[str]:
        """Check every export in `flights` as each falls due, until `head` is Ready; its URLs.

        The others are checked on their own schedules meanwhile, so an export that becomes
        ready while `head` is prepared is read as soon as `head` is. Cancelled, unknown or not
        ready after `export_timeout`: an error.
        """
        timeout = self.options.export_timeout
        while True:
            for flight in flights:
                if flight.urls is None and flight.error is None and flight.due <= self.clock:
                    try:
                        self._check(flight)
                    except SourceError as exc:
                        if flight is head:
                            raise
                        # Cancelled, say: raised when its turn comes, after the windows
                        # before it are stored.
                        flight.error = exc
            if head.error is not None:
                raise head.error
            if head.urls is not None:
                return head.urls
            # Injected sleeps take no time in tests, so count them as well as the clock.
            elapsed = max(self.clock - head.started, time.monotonic() - head.started_at)
            if elapsed >= timeout:
                # Named with the status URL, like every other error of a request.
                raise SourceError(
                    f"export {head.export_id} of {head.window} was not ready after {timeout:g}s "
                    f"(export_timeout; POST {redact_url(self.client.url(PATH))}); the next poll "
                    "asks for the same window again"
                )
            if self.stopping():
                # The daemon's sleep returns at once on shutdown: without this check the
                # loop would hammer the vendor until export_timeout.
                raise SourceError(
                    f"stopped while export {head.export_id} of {head.window} was prepared"
                )
            due = min(f.due for f in flights if f.urls is None and f.error is None)
            pause = max(0.0, min(due - self.clock, timeout - elapsed))
            self.sleep(pause)
            self.clock += pause

    def _check(self, flight: Flight) -> None:
        """One status check: Ready sets `urls`, NotReady schedules the next check."""
        export_id, window = flight.export_id, flight.window
        body = self._call({"exportId": export_id}, f"checking export {export_id}")
        result = body.get("exportResult")
        if not isinstance(result, dict):
            raise ProtocolError(f"export {export_id}: answer without an exportResult object")
        state = result.get("processingStatus")
        if state == "Ready":
            flight.urls = _urls(result, export_id)
            return
        if state == "Cancelled":
            raise SourceError(
                f"Maestra cancelled export {export_id} of {window}: "
                f"{_reason(result.get('cancellationReason'))}"
            )
        if state != "NotReady":
            raise ProtocolError(f"export {export_id}: unknown processingStatus {state!r}")
        # Soon at first (a quick export is ready within seconds), then less often.
        flight.due = self.clock + flight.pause
        flight.pause = min(flight.pause * 2, self.options.export_poll)

    def _call(self, payload: dict[str, Any], what: str) -> dict[str, Any]:
        return self._answer(self.client.post_json(PATH, params=self.params, json=payload), what)

    @staticmethod
    def _answer(body: Any, what: str) -> dict[str, Any]:
        """The answer when its top-level `status` is Success; else the vendor's words."""
        if not isinstance(body, dict):
            raise ProtocolError(f"{what}: Maestra answered {type(body).__name__}, not an object")
        if body.get("status") != "Success":
            text = describe(body)
            status = str(body.get("status"))
            raise MaestraError(f"{what}: Maestra answered {text}", status=status, vendor_text=text)
        return body


def _urls(result: dict[str, Any], export_id: str) -> list[str]:
    urls = result.get("urls") or []
    if not isinstance(urls, list):
        raise ProtocolError(f"export {export_id}: `urls` is not a list")
    out = []
    for item in urls:
        url = item.get("url") if isinstance(item, dict) else item
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProtocolError(f"export {export_id}: not a file URL: {str(url)[:100]!r}")
        out.append(url)
    return out


def _reason(value: Any) -> str:
    if value is None or value == "":
        return "no reason given"
    if isinstance(value, str):
        return one_line(value)
    return one_line(json.dumps(value, ensure_ascii=False))
