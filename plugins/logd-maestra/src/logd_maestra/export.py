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
from typing import TYPE_CHECKING, Any

import httpx

from logd import ProtocolError, SourceClient, SourceError

if TYPE_CHECKING:
    from .provider import MaestraOptions

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


class Exporter:
    """Starts and waits for exports of one source."""

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

    def start(self, window: Window) -> str:
        """Start an export of `window`; its id (an existing one when Maestra says duplicate)."""
        body = self._call(start_body(self.options, window), f"starting the export of {window}")
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
        """Poll every `export_poll` until Ready; the part URLs. Cancelled or too slow: an error."""
        timeout = self.options.export_timeout
        started = time.monotonic()
        waited = 0.0
        while True:
            body = self._call({"exportId": export_id}, f"checking export {export_id}")
            result = body.get("exportResult")
            if not isinstance(result, dict):
                raise ProtocolError(f"export {export_id}: answer without an exportResult object")
            state = result.get("processingStatus")
            if state == "Ready":
                return _urls(result, export_id)
            if state == "Cancelled":
                raise SourceError(
                    f"Maestra cancelled export {export_id} of {window}: "
                    f"{_reason(result.get('cancellationReason'))}"
                )
            if state != "NotReady":
                raise ProtocolError(f"export {export_id}: unknown processingStatus {state!r}")
            # Injected sleeps take no time in tests, so count them as well as the clock.
            elapsed = max(waited, time.monotonic() - started)
            if elapsed >= timeout:
                raise SourceError(
                    f"export {export_id} of {window} was not ready after {timeout:g}s "
                    "(export_timeout); the next poll asks for the same window again"
                )
            if self.stopping():
                # The daemon's sleep returns at once on shutdown: without this check the
                # loop would hammer the vendor until export_timeout.
                raise SourceError(f"stopped while export {export_id} of {window} was prepared")
            pause = min(self.options.export_poll, timeout - elapsed)
            self.sleep(pause)
            waited += pause

    def _call(self, payload: dict[str, Any], what: str) -> dict[str, Any]:
        body = self.client.post_json(PATH, params=self.params, json=payload)
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
