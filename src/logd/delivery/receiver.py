"""A small webhook receiver that verifies what logd sends: for tests, the demo and debugging.

    with Receiver("s3cret") as rx:             # listens on 127.0.0.1, a free port
        ...                                     # point a webhook at rx.url
        rx.wait_for(1)                          # deliveries received, verified or not

`responses` scripts the answers (`[503, 200]`: the first delivery fails, then all succeed);
`on_delivery` is called with each received delivery (the demo prints them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from logd.delivery.local_server import LocalServer
from logd.delivery.signing import Scheme, verify


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def delivery_id(self) -> str | None:
        """The delivery id header."""
        return self.headers.get("x-logd-delivery")

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class Receiver(LocalServer[Received]):
    """An HTTP server on 127.0.0.1 that verifies each delivery's signature and records it."""

    def __init__(
        self,
        secret: str,
        *,
        scheme: Scheme = "fleetit",
        host: str = "127.0.0.1",
        port: int = 0,
        responses: Iterable[int | tuple[int, dict[str, str], str]] = (),
        on_delivery: Callable[[Received], None] | None = None,
    ) -> None:
        self.secret = secret
        self.scheme = scheme
        self.on_delivery = on_delivery
        self._responses = list(responses)
        super().__init__(host, port, self._handler())

    @property
    def url(self) -> str:
        """The URL to configure a webhook with."""
        return f"{self.base_url}/hook"

    def respond_with(self, *responses: int | tuple[int, dict[str, str], str]) -> None:
        """Script the next answers; once used up, every delivery gets 200."""
        with self._lock:
            self._responses = list(responses)

    def check(self, headers: dict[str, str], body: bytes) -> bool:
        """True when the headers sign `body` with this receiver's secret."""
        if self.scheme == "fleetit":
            return verify(
                "fleetit",
                self.secret,
                body,
                headers.get("x-timestamp", ""),
                headers.get("x-signature", ""),
            )
        return verify(
            "standard-webhooks",
            self.secret,
            body,
            headers.get("webhook-timestamp", ""),
            headers.get("webhook-signature", ""),
            headers.get("webhook-id"),
        )

    def _next_response(self) -> tuple[int, dict[str, str], str]:
        with self._lock:
            answer = self._responses.pop(0) if self._responses else 200
        if isinstance(answer, int):
            return answer, {}, "ok" if answer < 300 else f"status {answer}"
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver.check(headers, body)
                status, extra, text = (
                    receiver._next_response() if verified else (401, {}, "bad signature")
                )
                # Recorded before answering, so a sender that got its answer finds it here.
                got = Received(self.path, headers, body, verified, status)
                receiver.record(got)
                if receiver.on_delivery:
                    receiver.on_delivery(got)
                payload = text.encode()
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the caller decides what to print

        return Handler
