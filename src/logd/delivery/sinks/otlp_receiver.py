"""A small OTLP/HTTP logs receiver that decodes what logd exports: for tests, the demo and
debugging (an OpenTelemetry collector's `otlphttp` receiver, minus the collector).

    with OtlpReceiver() as rx:                 # listens on 127.0.0.1, a free port
        ...                                    # point an export's endpoint at rx.endpoint
        rx.wait_for_records(10)                # log records decoded so far

`respond_with` scripts the answers (`503`, `Answer(429, retry_after="7")`,
`Answer(rejected=2, error_message="…")` for a partial success); once used up, every request
gets a full success. Bodies are decoded with `opentelemetry-proto`, protobuf or OTLP/JSON by
their Content-Type, gzip by their Content-Encoding; a request that does not decode gets 400.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from logd.delivery.local_server import LocalServer
from logd.delivery.sinks.otlp import CONTENT_TYPES, Format, parse_request

_FORMATS: dict[str, Format] = {t: f for f, t in CONTENT_TYPES.items()}
MAX_BODY = 64 * 1024 * 1024  # bytes of a request accepted (the collector's default is 20 MiB)


@dataclass
class Answer:
    """How the receiver answers one request."""

    status: int = 200
    retry_after: str | None = None  # the Retry-After header: seconds or an HTTP date
    rejected: int = 0  # a 200's partial_success.rejected_log_records
    error_message: str = ""  # a 200's partial_success.error_message, or an error's Status message
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request the receiver got, decoded (`request` is None when it did not decode)."""

    path: str
    headers: dict[str, str]
    body: bytes  # as decoded from its Content-Encoding
    format: Format | None
    request: ExportLogsServiceRequest | None
    status: int

    def records(self) -> list[tuple[dict[str, Any], LogRecord]]:
        """Each log record with its resource's attributes as plain values."""
        out: list[tuple[dict[str, Any], LogRecord]] = []
        for resource_logs in self.request.resource_logs if self.request else ():
            resource = {a.key: plain(a.value) for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                out.extend((resource, record) for record in scope_logs.log_records)
        return out


def plain(value: AnyValue) -> Any:
    """An `AnyValue` as the Python value it holds (kvlists as dicts, arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    return getattr(value, kind)


def attributes(record: LogRecord) -> dict[str, Any]:
    """A log record's attributes as plain values."""
    return {a.key: plain(a.value) for a in record.attributes}


class OtlpReceiver(LocalServer[Received]):
    """An HTTP server on 127.0.0.1 that decodes OTLP logs requests and records them."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responses: tuple[int | Answer, ...] = (),
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        self.on_request = on_request
        self._responses: list[int | Answer] = list(responses)
        super().__init__(host, port, self._handler())

    @property
    def endpoint(self) -> str:
        """The base URL to configure an export with (requests go to its `/v1/logs`)."""
        return self.base_url

    def respond_with(self, *responses: int | Answer) -> None:
        """Script the next answers; once used up, every request gets a full success."""
        with self._lock:
            self._responses = list(responses)

    def records(self) -> list[tuple[dict[str, Any], LogRecord]]:
        """Every log record received so far (from requests that decoded), in arrival order."""
        with self._lock:
            got = list(self.received)
        return [pair for r in got if 200 <= r.status < 300 for pair in r.records()]

    def _next_answer(self) -> Answer:
        with self._lock:
            answer = self._responses.pop(0) if self._responses else Answer()
        return Answer(answer) if isinstance(answer, int) else answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, "application/json", b'{"message": "request too large"}')
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                content_type = headers.get("content-type", "").split(";")[0].strip()
                fmt = _FORMATS.get(content_type)
                request: ExportLogsServiceRequest | None = None
                status, problem = 200, ""
                if self.path != "/v1/logs":
                    status, problem = 404, f"no such path {self.path}"
                elif fmt is None:
                    status, problem = 415, f"unsupported content type {content_type!r}"
                else:
                    try:
                        if headers.get("content-encoding") == "gzip":
                            body = gzip.decompress(body)
                        request = parse_request(body, fmt)
                    except (OSError, EOFError, ValueError) as exc:
                        status, problem = 400, str(exc)
                answer = receiver._next_answer() if status == 200 else Answer(status)
                # Recorded before answering, so a sender that got its answer finds it here.
                got = Received(self.path, headers, body, fmt, request, answer.status)
                receiver.record(got)
                if receiver.on_request:
                    receiver.on_request(got)
                extra = dict(answer.headers)
                if answer.retry_after is not None:
                    extra["Retry-After"] = answer.retry_after
                payload = _payload(answer, problem, fmt or "json")
                self._answer(answer.status, CONTENT_TYPES[fmt or "json"], payload, extra)

            def _answer(
                self,
                status: int,
                content_type: str,
                payload: bytes,
                extra: dict[str, str] | None = None,
            ) -> None:
                try:
                    self.send_response(status)
                    for key, value in (extra or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender is gone (a test killed it): the request is recorded

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the caller decides what to print

        return Handler


def _payload(answer: Answer, problem: str, fmt: Format) -> bytes:
    """The answer's body in the request's format: an `ExportLogsServiceResponse` for a 2xx,
    else a `google.rpc.Status` (as the OTLP/HTTP specification says a collector answers)."""
    if 200 <= answer.status < 300:
        response = ExportLogsServiceResponse()
        if answer.rejected or answer.error_message:
            response.partial_success.rejected_log_records = answer.rejected
            response.partial_success.error_message = answer.error_message
        if fmt == "json":
            return orjson.dumps(json_format.MessageToDict(response))
        return response.SerializeToString()
    message = answer.error_message or problem or f"status {answer.status}"
    code = 14 if answer.status in (502, 503, 504) else 8 if answer.status == 429 else 3
    if fmt == "json":
        return orjson.dumps({"code": code, "message": message})
    # Status's first two fields (1: code, 2: message) as ExportLogsPartialSuccess writes them.
    return ExportLogsPartialSuccess(
        rejected_log_records=code, error_message=message
    ).SerializeToString()
