"""OTLP export: stored entries sent to an OpenTelemetry collector as log records (OTLP/HTTP).

    exporter = OtlpExporter(config)                       # one `[[exports]]` table
    result = exporter.send(rows)                          # one batch: an ExportResult
    export_changes(store, config.name, exporter.send, batch_size=config.batch_size)
    OtlpSink(config, store, leases=store, holder=daemon_id).run(stop)   # rounds, backoff
    send_test(config)                                     # `logd exports test NAME`

Mapping (the OpenTelemetry logs data model):
- one `ResourceLogs` per source, with resource attributes `service.name = "logd"`,
  `logd.source` and `logd.provider`, and one `ScopeLogs` (scope `logd`, logd's version);
- `time_unix_nano` is the entry's time (0, "unknown", for one before 1970: the field is
  unsigned), `observed_time_unix_nano` when logd stored this version of it;
- the body is the entry's message; attributes are `logd.entry_id`, `logd.status`,
  `logd.native_id`, `logd.error`, `logd.entity.type`, `logd.entity.id`,
  `logd.timestamp_observed` (when true), and the entry's `details` and `raw` JSON as nested
  `AnyValue` key-value lists (`logd.details`, `logd.raw`): arrays stay arrays and keys holding
  dots stay unambiguous, which flattened dotted keys would lose. Every record is bounded
  (`MAX_STRING`, `MAX_ITEMS`, `MAX_DEPTH`, `RECORD_BUDGET`); what was cut is marked with `…`
  and `logd.truncated = true`, and top-level attributes left out are counted in
  `dropped_attributes_count`.
- Severity from the status (`SEVERITY`): failure → ERROR (17), a call that failed; success →
  INFO (9); pending → INFO (9), a call still under way is normal traffic, and its later change
  to success or failure is exported again as a record of its own, so a WARN here would page
  on every slow call; invalid → WARN (13), a record logd stored but could not map: logd's
  operator should look, but no call is known to have failed. `severity_text` is the level's
  short name; the status itself is in `logd.status`.

Outcomes of a request (the OTLP/HTTP specification's "Failures" and "Throttling"): 2xx is
delivered, with `partial_success.rejected_log_records` logged and counted, never retried;
429, 502, 503 and 504, network errors and timeouts are retried after the answer's
`Retry-After` (seconds or an HTTP date) or exponential backoff with jitter; 413 splits the
batch in halves; 401, 403, 404, 405, 407 and redirects (never followed) block the export:
they name a wrong key or endpoint, so the position stays until the operator fixes it, rather
than every entry exported meanwhile being skipped; any other status is permanent (the
specification forbids retrying it): the batch is counted as rejected and the export moves on.

Delivery is at least once: `export_changes` moves the sink's position only after the
collector answered for the batch, so a crash in between sends that batch again.
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from logd import redact
from logd.__about__ import __version__
from logd.config.settings import OtlpExportConfig
from logd.errors import StoreError
from logd.plugin.deadline import Deadline
from logd.plugin.deadline import transport as deadline_transport
from logd.plugin.http import redact_url, retry_after_seconds
from logd.store.interface import Lease, LeaseLost, Row

if TYPE_CHECKING:
    from logd.store.interface import Store

__all__ = [
    "SEVERITY",
    "ChangeFeed",
    "ExportResult",
    "ExportRound",
    "LeaseKeeper",
    "OtlpExporter",
    "OtlpSink",
    "encode_request",
    "export_changes",
    "export_secrets",
    "logs_url",
    "parse_request",
    "send_test",
    "serialize",
]

log = logging.getLogger("logd.export")

Format = Literal["protobuf", "json"]
CONTENT_TYPES: dict[Format, str] = {
    "protobuf": "application/x-protobuf",
    "json": "application/json",
}

#: status → (SeverityNumber, severity_text); the reasons are in the module docstring.
SEVERITY: dict[str, tuple[SeverityNumber.ValueType, str]] = {
    "failure": (SeverityNumber.SEVERITY_NUMBER_ERROR, "ERROR"),
    "success": (SeverityNumber.SEVERITY_NUMBER_INFO, "INFO"),
    "pending": (SeverityNumber.SEVERITY_NUMBER_INFO, "INFO"),
    "invalid": (SeverityNumber.SEVERITY_NUMBER_WARN, "WARN"),
}

MAX_STRING = 4096  # characters of one attribute string (an error text, a vendor field)
MAX_BODY = 32_768  # characters of the body (the message)
MAX_KEY = 256  # characters of one key of a nested map
MAX_ITEMS = 256  # entries of one nested map or array
MAX_DEPTH = 8  # nesting levels of details/raw kept; deeper is sent as its JSON text
#: Characters of attribute keys and values one record may carry, each value costing at least
#: NODE_COST: a vendor's 10 MB raw record becomes a record of ~64 KB, not a 10 MB request.
RECORD_BUDGET = 65_536
NODE_COST = 8
#: Encoded bytes of one request, at most (a batch is split to keep under it): the collector's
#: default request limit is 20 MiB, and OTLP/JSON is about 2.5 times the protobuf size.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
RESPONSE_LIMIT = 64 * 1024  # bytes of a collector's answer read, at most
ERROR_TEXT_LIMIT = 300  # characters of a collector's error text kept in a result or log line
RETRYABLE = frozenset({429, 502, 503, 504})  # the OTLP/HTTP specification's list
#: The request reached the wrong place or was refused as who we are: the operator must act.
BLOCKING = frozenset({401, 403, 404, 405, 407})
MAX_RETRY_AFTER = 3600.0  # seconds of a collector's Retry-After honoured, at most

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- encoding -------------------------------------------------------------------------------


class _Budget:
    """What is left of one record's attribute budget, and whether anything was cut."""

    __slots__ = ("left", "truncated")

    def __init__(self, chars: int) -> None:
        self.left = chars
        self.truncated = False


def _cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one `…` when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…" if limit > 0 else ""


def _put_string(target: AnyValue, text: str, budget: _Budget) -> bool:
    """Set `target` to `text`, cut to MAX_STRING and to what is left of the budget; False
    (`target` untouched) when not even a cut of it fits."""
    cost = max(len(text), NODE_COST)
    if cost > budget.left or len(text) > MAX_STRING:
        room = min(MAX_STRING, budget.left)
        if room < NODE_COST:
            budget.truncated = True
            return False
        if len(text) > room:
            text = _cut(text, room)
            budget.truncated = True
        cost = max(len(text), NODE_COST)
    budget.left -= cost
    target.string_value = text
    return True


def put_value(target: AnyValue, value: Any, budget: _Budget, depth: int = 0) -> bool:
    """Write a JSON value into `target` (maps as kvlists, lists as arrays), within `budget`;
    False (`target` left empty) when the budget has no room left for it.

    Written in place: building nested messages with constructors copies each level into its
    parent, which made a record of a few nested fields cost ~200 µs.
    """
    kind = type(value)
    if kind is str:
        return _put_string(target, value, budget)
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return _put_string(target, str(value), budget)  # int64 cannot hold it
        if budget.left < NODE_COST:
            budget.truncated = True
            return False
        budget.left -= NODE_COST
        if value is None:
            pass  # an empty AnyValue: null in the data model
        elif isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int):
            target.int_value = value
        else:
            target.double_value = value
        return True
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            budget.truncated = True
            text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            return _put_string(target, text, budget)
        if budget.left < NODE_COST:
            budget.truncated = True
            return False
        budget.left -= NODE_COST
        if isinstance(value, dict):
            return _put_map(target, value, budget, depth)
        return _put_list(target, value, budget, depth)
    return _put_string(target, str(value), budget)


def _put_map(target: AnyValue, value: dict[Any, Any], budget: _Budget, depth: int) -> bool:
    pairs = target.kvlist_value.values
    for i, (key, item) in enumerate(value.items()):
        if i >= MAX_ITEMS:
            budget.truncated = True
            break
        name = key if type(key) is str else str(key)
        if len(name) > MAX_KEY:
            name = _cut(name, MAX_KEY)
            budget.truncated = True
        cost = max(len(name), NODE_COST)
        if cost > budget.left:
            budget.truncated = True
            break
        budget.left -= cost
        pair = pairs.add()
        pair.key = name
        if not put_value(pair.value, item, budget, depth + 1):
            del pairs[-1]
            break
    if value and not pairs:
        target.ClearField("kvlist_value")  # none of it fit: left out, not an empty map
        return False
    target.kvlist_value.SetInParent()  # an empty map is still a map
    return True


def _put_list(
    target: AnyValue, value: list[Any] | tuple[Any, ...], budget: _Budget, depth: int
) -> bool:
    items = target.array_value.values
    for i, item in enumerate(value):
        if i >= MAX_ITEMS:
            budget.truncated = True
            break
        if not put_value(items.add(), item, budget, depth + 1):
            del items[-1]
            break
    if value and not items:
        target.ClearField("array_value")
        return False
    target.array_value.SetInParent()
    return True


def unix_nanos(iso: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (naive: UTC); 0 ("unknown" in OTLP) for
    a time before 1970, which the unsigned field cannot hold, or text that is no time."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Integer arithmetic: a float of nanoseconds since 1970 has no room for the microseconds.
    return max(0, (when - EPOCH) // MICROSECOND * 1000)


def log_record(row: Row, observed_ns: int) -> LogRecord:
    """One stored entry as an OTLP log record (the mapping in the module docstring)."""
    number, text = SEVERITY.get(row.status, (SeverityNumber.SEVERITY_NUMBER_UNSPECIFIED, ""))
    # The store's time of this version of the entry, once the row carries it.
    stored = getattr(row, "updated_at", None)
    if isinstance(stored, str) and unix_nanos(stored):
        observed_ns = unix_nanos(stored)
    budget = _Budget(RECORD_BUDGET)
    fixed: tuple[tuple[str, Any], ...] = (
        ("logd.entry_id", row.id),
        ("logd.status", row.status),
        ("logd.native_id", row.native_id),
        ("logd.error", row.error),
        ("logd.entity.type", row.entity_type),
        ("logd.entity.id", row.entity_id),
        ("logd.timestamp_observed", True if row.timestamp_observed else None),
        ("logd.details", row.details),
        ("logd.raw", row.raw),
    )
    record = LogRecord(
        time_unix_nano=unix_nanos(row.timestamp),
        observed_time_unix_nano=observed_ns,
        severity_number=number,
        severity_text=text,
    )
    attributes = record.attributes
    for key, value in fixed:
        if value is None:
            continue  # an absent field is left out, not sent as null
        pair = attributes.add()
        pair.key = key
        if not put_value(pair.value, value, budget):
            del attributes[-1]
            record.dropped_attributes_count += 1
    body = _cut(row.message, MAX_BODY)
    record.body.string_value = body
    if budget.truncated or body != row.message:
        pair = attributes.add()
        pair.key = "logd.truncated"
        pair.value.bool_value = True
    return record


def _nanos(when: datetime) -> int:
    return max(0, (when.astimezone(UTC) - EPOCH) // MICROSECOND * 1000)


def _request(items: Sequence[tuple[Row, LogRecord]]) -> ExportLogsServiceRequest:
    """One request of these records: a ResourceLogs per (source, provider), first seen first."""
    groups: dict[tuple[str, str], list[LogRecord]] = {}
    for row, record in items:
        groups.setdefault((row.source, row.provider), []).append(record)
    scope = InstrumentationScope(name="logd", version=__version__)
    resources = []
    for (source, provider), records in groups.items():
        resource = Resource(
            attributes=[
                KeyValue(key="service.name", value=AnyValue(string_value="logd")),
                KeyValue(key="logd.source", value=AnyValue(string_value=source)),
                KeyValue(key="logd.provider", value=AnyValue(string_value=provider)),
            ]
        )
        resources.append(
            ResourceLogs(
                resource=resource, scope_logs=[ScopeLogs(scope=scope, log_records=records)]
            )
        )
    return ExportLogsServiceRequest(resource_logs=resources)


def encode_request(rows: Iterable[Row], *, observed_at: datetime) -> ExportLogsServiceRequest:
    """Stored entries as one `ExportLogsServiceRequest` (`observed_at`: when they were read,
    the observed time of a row that does not carry its store time)."""
    observed = _nanos(observed_at)
    return _request([(row, log_record(row, observed)) for row in rows])


def _chunks(
    rows: Iterable[Row], observed_ns: int, max_bytes: int
) -> Iterator[list[tuple[Row, LogRecord]]]:
    """The rows' records in runs that encode to at most `max_bytes` (a record over it goes
    alone), each made only when the one before was sent: a batch of large entries never
    holds more than one request's records."""
    chunk: list[tuple[Row, LogRecord]] = []
    size = 0
    for row in rows:
        record = log_record(row, observed_ns)
        n = record.ByteSize()
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append((row, record))
        size += n
    if chunk:
        yield chunk


def serialize(request: ExportLogsServiceRequest, fmt: Format) -> bytes:
    """The request's body: binary protobuf, or OTLP/JSON (proto3 JSON with lowerCamelCase
    names and enums as integers, as the OTLP specification requires; logd sets no trace or
    span ids, the one place OTLP/JSON departs from proto3 JSON)."""
    if fmt == "json":
        return orjson.dumps(json_format.MessageToDict(request, use_integers_for_enums=True))
    return request.SerializeToString()


def parse_request(body: bytes, fmt: Format) -> ExportLogsServiceRequest:
    """A request body back as the message; raises ValueError when it is not one."""
    request = ExportLogsServiceRequest()
    try:
        if fmt == "json":
            json_format.Parse(body, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an OTLP {fmt} logs request: {exc}") from None
    return request


# -- sending --------------------------------------------------------------------------------


def logs_url(endpoint: str) -> str:
    """`{endpoint}/v1/logs`: the endpoint is the collector's base URL, as the OpenTelemetry
    SDKs read OTEL_EXPORTER_OTLP_ENDPOINT (`http://c:4318/` and `http://c:4318` alike)."""
    url = httpx.URL(endpoint)
    return str(url.copy_with(path=url.path.rstrip("/") + "/v1/logs"))


def export_secrets(config: OtlpExportConfig) -> list[str]:
    """What must never be logged: each header value (and the token after a scheme, as in
    `Bearer TOKEN`), and what may authorize the endpoint URL by itself."""
    values: list[str] = []
    for value in config.headers.values():
        values += redact.header_secrets(value.get_secret_value())
    values += redact.url_secrets(config.endpoint, all_query=True)
    return values


@dataclass(frozen=True)
class ExportResult:
    """What sending one batch came to.

    `outcome`: "delivered" (the collector took it; `rejected` of its records it refused and
    said so), "rejected" (refused for good: not to be sent again), "retry" (after
    `retry_after` seconds when the collector asked for a wait), "blocked" (a wrong key or
    endpoint: keep the position until the operator acts).
    """

    outcome: Literal["delivered", "rejected", "retry", "blocked"]
    records: int
    rejected: int = 0
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def advance(self) -> bool:
        """True when the batch is done with: the sink's position may move past it."""
        return self.outcome in ("delivered", "rejected")


def _combine(results: Sequence[ExportResult]) -> ExportResult:
    """One result for a batch sent as several requests, all of which were answered."""
    records = sum(r.records for r in results)
    rejected = sum(r.records if r.outcome == "rejected" else r.rejected for r in results)
    errors = [r for r in results if r.error]
    last = errors[-1] if errors else results[-1]
    outcome: Literal["delivered", "rejected"] = (
        "rejected" if all(r.outcome == "rejected" for r in results) else "delivered"
    )
    return ExportResult(outcome, records, rejected, last.status, last.error)


class OtlpExporter:
    """Sends batches of stored entries to one collector; one HTTP client (a kept-alive
    connection), each request bounded as a whole by the export's `timeout`
    (`logd.plugin.deadline`: a collector answering a byte a second never trips a per-read timeout).
    """

    def __init__(
        self,
        config: OtlpExportConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = _utcnow,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.config = config
        self.url = logs_url(config.endpoint)
        self.clock = clock
        self.max_request_bytes = max_request_bytes
        self.secrets = export_secrets(config)
        redact.register(*self.secrets)  # httpx's debug lines show headers and the URL
        self.deadline = Deadline(
            expired="no complete answer within the export's timeout",
            closing="the export is closing",
        )
        self._client = httpx.Client(
            transport=transport or deadline_transport(self.deadline),
            timeout=config.timeout,
            follow_redirects=False,
        )
        self._headers = {
            **{name: value.get_secret_value() for name, value in config.headers.items()},
            "Content-Type": CONTENT_TYPES[config.format],
            "User-Agent": f"logd/{__version__}",
            # An answer is read raw and capped: a compressed one could inflate past the cap.
            "Accept-Encoding": "identity",
        }
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"

    def __enter__(self) -> OtlpExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OtlpExporter({self.config.name!r}, {redact_url(self.url)!r})"

    def close(self) -> None:
        """End a request under way at once and close the connection."""
        self.deadline.abort()
        self._client.close()

    def send(self, rows: Sequence[Row]) -> ExportResult:
        """Send `rows` (in several requests when large); what came of it.

        Requests go in order and the first that is not answered for good (retry, blocked)
        ends the batch with its result: the whole batch is sent again later (at least once).
        """
        results: list[ExportResult] = []
        for chunk in _chunks(rows, _nanos(self.clock()), self.max_request_bytes):
            result = self._send_items(chunk)
            if not result.advance:
                return ExportResult(
                    result.outcome,
                    len(rows),
                    status=result.status,
                    error=result.error,
                    retry_after=result.retry_after,
                )
            results.append(result)
        if not results:
            return ExportResult("delivered", 0)
        return _combine(results)

    def _send_items(self, items: Sequence[tuple[Row, LogRecord]]) -> ExportResult:
        result = self._post(_request(items), len(items))
        if result.status == 413 and len(items) > 1:
            # Too large for this collector's limit: halves, each answered on its own.
            half = len(items) // 2
            first = self._send_items(items[:half])
            if not first.advance:
                return first
            second = self._send_items(items[half:])
            if not second.advance:
                return second
            return _combine([first, second])
        return result

    def _mask(self, text: str) -> str:
        """`text` with every credential masked, then cut (masked first: a secret straddling
        the cut would leave a prefix the mask no longer recognises)."""
        return _cut(redact.mask(" ".join(text.split()), self.secrets), ERROR_TEXT_LIMIT)

    def _post(self, request: ExportLogsServiceRequest, count: int) -> ExportResult:
        """Send one request once and classify the answer."""
        body = serialize(request, self.config.format)
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6, mtime=0)
        try:
            with (
                self.deadline.until(time.monotonic() + self.config.timeout),
                self._client.stream("POST", self.url, content=body, headers=self._headers) as r,
            ):
                answer = _read_capped(r, RESPONSE_LIMIT)
        except httpx.HTTPError as exc:
            # httpx's messages name the failure, not the URL; masked all the same.
            return ExportResult("retry", count, error=self._mask(f"{type(exc).__name__}: {exc}"))
        status = r.status_code
        content_type = r.headers.get("content-type", "")
        if 200 <= status < 300:
            return self._accepted(answer, content_type, count, status)
        if 300 <= status < 400:
            location = r.headers.get("location")
            where = f" to {redact_url(httpx.URL(self.url).join(location))}" if location else ""
            text = self._mask(f"HTTP {status} redirect{where} not followed")
            return ExportResult("blocked", count, status=status, error=f"{text}; set the final URL")
        text = self._mask(_error_text(answer, content_type) or r.reason_phrase)
        error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if status in RETRYABLE:
            after = retry_after_seconds(r)
            return ExportResult("retry", count, status=status, error=error, retry_after=after)
        if status in BLOCKING:
            what = "headers (the API key)" if status in (401, 403, 407) else "endpoint"
            error = f"{error}; check the export's {what}"
            return ExportResult("blocked", count, status=status, error=error)
        return ExportResult("rejected", count, rejected=count, status=status, error=error)

    def _accepted(self, answer: bytes, content_type: str, count: int, status: int) -> ExportResult:
        """A 2xx answer: delivered, with the records a partial success names as rejected."""
        response = ExportLogsServiceResponse()
        try:
            if "json" in content_type:
                json_format.Parse(answer or b"{}", response, ignore_unknown_fields=True)
            else:
                response.ParseFromString(answer)
        except (json_format.ParseError, DecodeError, UnicodeDecodeError):
            # Taken, says the status; the answer is not worth failing the batch over.
            log.debug("export %s: the collector's answer is not an OTLP response", self.config.name)
            return ExportResult("delivered", count, status=status)
        partial = response.partial_success
        rejected = min(count, max(0, partial.rejected_log_records))
        error = self._mask(partial.error_message) or None
        if rejected or error:
            log.warning(
                "export %s: the collector rejected %d of %d records: %s",
                self.config.name,
                rejected,
                count,
                error or "no reason given",
            )
        return ExportResult("delivered", count, rejected, status, error)


def send_test(
    config: OtlpExportConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = _utcnow,
) -> ExportResult:
    """Send one made-up failure record to the export's collector now; what came of it
    (`logd exports test`: checks the endpoint and the headers before the daemon relies on
    them)."""
    now = clock().astimezone(UTC)
    sample = Row(
        id="logd-test:sample-1",
        source="logd-test",
        provider="logd-test",
        native_id="sample-1",
        timestamp=now.isoformat(timespec="microseconds"),
        status="failure",
        message="logd exports test: a sample failure",
        error="HTTP 500: sample error text",
        entity_type="order",
        entity_id="SO-1",
        raw={"sample": True},
        details=None,
    )
    with OtlpExporter(config, transport=transport, clock=lambda: now) as exporter:
        return exporter.send([sample])


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the answer, as sent: bounded memory whatever the collector."""
    if response.is_stream_consumed:  # read already (an httpx.MockTransport answer)
        return response.content[:limit]
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


def _error_text(answer: bytes, content_type: str) -> str:
    """The message of a collector's error answer: a `google.rpc.Status` (protobuf or JSON),
    else the text itself."""
    if "protobuf" in content_type:
        # Status is (1: int32 code, 2: string message, 3: details) on the wire, and
        # ExportLogsPartialSuccess (1: int64, 2: string) reads the first two the same way;
        # this saves a dependency on the googleapis protos for one string.
        status = ExportLogsPartialSuccess()
        try:
            status.ParseFromString(answer)
        except DecodeError:
            return ""
        return status.error_message
    if "json" in content_type:
        try:
            data = orjson.loads(answer)
        except orjson.JSONDecodeError:
            data = None
        message = data.get("message") if isinstance(data, dict) else None
        if isinstance(message, str):
            return message
    return answer.decode("utf-8", "replace")


# -- the export loop ------------------------------------------------------------------------


class ChangeFeed(Protocol):
    """What an export needs of the store (`logd.store.interface.Store` has it): entries by
    change sequence, and how far the sink got."""

    def changes_after(self, seq: int, *, limit: int) -> list[tuple[int, Row]]:
        """Up to `limit` entries whose change sequence is above `seq`, as (seq, row), ascending."""
        ...

    def sink_position(self, sink: str) -> int:
        """The change sequence `sink` has delivered up to (0: none yet)."""
        ...

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        """Record that `sink` has delivered every change up to `seq`; fenced by `lease`."""
        ...


class LeaseKeeper(Protocol):
    """Who drives a sink when several daemons share a store (`Store.claim_lease`)."""

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew lease `name` for `holder` for `ttl` seconds; None while another
        holder's lease has not expired."""
        ...


if TYPE_CHECKING:

    def _a_store_is_a_change_feed(store: Store) -> tuple[ChangeFeed, LeaseKeeper]:
        return store, store  # mypy checks that every backend can drive an export


@dataclass
class ExportRound:
    """What one `export_changes` call did."""

    position: int
    exported: int = 0  # records the collector took
    rejected: int = 0  # records it refused (partial success, or a rejected batch)
    batches: int = 0
    #: The answer that ended the round before it caught up (retry or blocked), if any.
    halted: ExportResult | None = None
    #: Another daemon holds the sink's lease: this one sent nothing.
    standby: bool = False


def export_changes(
    feed: ChangeFeed,
    sink: str,
    send: Callable[[Sequence[Row]], ExportResult],
    *,
    batch_size: int,
    stop: threading.Event | None = None,
    max_batches: int | None = None,
    lease: Lease | None = None,
) -> ExportRound:
    """Send every change after `sink`'s position in batches of `batch_size`, moving the
    position past a batch only once it is done with (at least once: a crash between the send
    and the move sends the batch again); stops at the first batch that must wait.

    `lease` (`sink:<name>`, held by the daemon driving this sink) fences each move: an
    instance that lost it gets `LeaseLost` instead of moving the position of the new holder.
    """
    position = feed.sink_position(sink)
    done = ExportRound(position)
    while not (stop is not None and stop.is_set()):
        if max_batches is not None and done.batches >= max_batches:
            break
        changes = feed.changes_after(position, limit=batch_size)
        if not changes:
            break
        result = send([row for _, row in changes])
        done.batches += 1
        if not result.advance:
            done.halted = result
            break
        if result.outcome == "rejected":
            log.error(
                "export %s: %d records refused for good, skipped: %s",
                sink,
                result.records,
                result.error,
            )
        position = changes[-1][0]
        feed.set_sink_position(sink, position, lease=lease)
        done.position = position
        done.exported += result.records - result.rejected
        done.rejected += result.rejected
    return done


class OtlpSink:
    """One `[[exports]]` table at work: rounds of `export_changes` until stopped, waiting
    between them by the last answer (Retry-After, exponential backoff with jitter).

    With `leases` (daemons sharing a store), only the holder of the lease `sink:<name>`
    exports: it renews the lease before each batch and fences each move of the position with
    it; the others stand by and take over once it lapses (`lease_ttl` seconds after the
    holder's last batch began: longer than a batch's requests may take).
    """

    def __init__(
        self,
        config: OtlpExportConfig,
        feed: ChangeFeed,
        *,
        leases: LeaseKeeper | None = None,
        holder: str = "",
        lease_ttl: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        idle: float = 5.0,
    ) -> None:
        self.config = config
        self.feed = feed
        self.leases, self.holder, self.lease_ttl = leases, holder, lease_ttl
        self.exporter = OtlpExporter(config, transport=transport)
        self.rng = rng or random.Random()
        self.backoff, self.max_backoff, self.idle = backoff, max_backoff, idle
        self.failures = 0  # rounds in a row that ended waiting
        self._wake = threading.Event()
        self._closed = False

    @property
    def name(self) -> str:
        """The `[[exports]]` table's name."""
        return self.config.name

    def close(self) -> None:
        """End a request under way and close the connection; `run` returns soon after."""
        self._closed = True
        self.exporter.close()
        self.kick()

    def kick(self) -> None:
        """Wake `run` now: entries were stored (or the sink is closing)."""
        self._wake.set()

    def export_due(self, stop: threading.Event | None = None) -> ExportRound:
        """One round: everything after the position, or up to the first batch that must wait."""
        if self.leases is None:
            done = export_changes(
                self.feed,
                self.config.name,
                self.exporter.send,
                batch_size=self.config.batch_size,
                stop=stop,
            )
        else:
            done = self._leased_round(self.leases, stop)
        if self._closed:
            return done  # a request cut short by `close` is not the collector's fault
        halted = done.halted
        if halted is None:
            self.failures = 0
        elif halted.outcome == "blocked":
            log.error("export %s: %s", self.config.name, halted.error)
            self.failures += 1
        else:
            log.warning("export %s: will retry: %s", self.config.name, halted.error)
            self.failures += 1
        return done

    def _leased_round(self, leases: LeaseKeeper, stop: threading.Event | None) -> ExportRound:
        """A round of single batches, each under a freshly renewed lease."""
        name = self.config.name
        done = ExportRound(self.feed.sink_position(name))
        while not (stop is not None and stop.is_set()):
            lease = leases.claim_lease(f"sink:{name}", self.holder, self.lease_ttl)
            if lease is None:
                done.standby = done.batches == 0
                break
            try:
                step = export_changes(
                    self.feed,
                    name,
                    self.exporter.send,
                    batch_size=self.config.batch_size,
                    max_batches=1,
                    lease=lease,
                )
            except LeaseLost:
                # The batch went out under a lease that lapsed meanwhile: the new holder
                # sends it again from the position (at least once), so nothing is lost.
                log.info("export %s: the lease passed to another daemon", name)
                break
            done.position, done.halted = step.position, step.halted
            done.batches += step.batches
            done.exported += step.exported
            done.rejected += step.rejected
            if step.halted is not None or step.batches == 0:
                break
        return done

    def delay(self, done: ExportRound) -> float:
        """Seconds to wait before the next round after `done`."""
        halted = done.halted
        if halted is None:
            return self.idle
        if halted.outcome == "blocked":
            return self.max_backoff  # the operator must act; a restart retries at once
        wait = min(self.max_backoff, self.backoff * 2.0 ** max(0, self.failures - 1))
        wait *= 0.5 + self.rng.random() / 2  # jitter: collectors recovering get a spread
        if halted.retry_after is not None:
            wait = max(wait, min(halted.retry_after, MAX_RETRY_AFTER))
        return wait

    def run(self, stop: threading.Event, *, wait: Callable[[float], object] | None = None) -> None:
        """Export until `stop` is set: a round, then a wait (`delay`) that `kick` cuts short
        unless the collector asked for it. `wait(seconds)` replaces the waiting (tests)."""
        while not (stop.is_set() or self._closed):
            try:
                done = self.export_due(stop)
                seconds = self.delay(done)
            except StoreError as exc:  # the store's fault: said in one line, retried
                log.error("export %s: %s", self.config.name, exc)
                self.failures += 1
                seconds = min(self.max_backoff, self.backoff * 2.0**self.failures)
                done = None
            except Exception:  # a bug: keep its traceback, keep the export alive
                log.exception("export %s: round failed", self.config.name)
                self.failures += 1
                seconds = min(self.max_backoff, self.backoff * 2.0**self.failures)
                done = None
            if stop.is_set() or self._closed:
                break
            if wait is not None:
                wait(seconds)
                continue
            # Waiting on the collector (it asked, or is unwell): new entries do not cut it short.
            self._sleep(stop, seconds, wakeable=done is not None and done.halted is None)

    def _sleep(self, stop: threading.Event, seconds: float, *, wakeable: bool) -> None:
        """Wait `seconds`, or until `close` (or `stop` then `kick`); `kick` ends it if
        `wakeable`."""
        deadline = time.monotonic() + seconds
        while not (stop.is_set() or self._closed):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._wake.wait(left):
                self._wake.clear()
                if wakeable:
                    return
