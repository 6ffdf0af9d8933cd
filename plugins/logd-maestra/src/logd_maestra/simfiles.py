"""The simulator's second origin: a file host serving export parts as signed storage URLs do.

Parts are generated and sent as they are read (chunked transfer), gzip-compressed or plain,
each a `;`-separated UTF-8 CSV with a BOM and one header row, so that a 200k-row export is
never built in memory on this side either. Like signed object storage, the host refuses a
request that also carries an `Authorization` header, and records it in `auth_seen`.
"""

from __future__ import annotations

import csv
import io
import secrets
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from logd import SimRequest, SimResponse, Simulator

#: The columns of the vendor page, in its order.
COLUMNS = (
    "OperationLogTransactionId",
    "OperationLogStartDateTimeUtc",
    "OperationLogEndDateTimeUtc",
    "OperationLogOperationSystemName",
    "OperationLogOperationName",
    "OperationLogEndpointExternalId",
    "OperationLogIntegrationName",
    "OperationLogHasErrors",
    "OperationLogErrorMessages",
    "OperationLogDevice",
    "OperationLogStatus",
    "OperationLogHttpMethod",
    "OperationLogUrl",
    "OperationLogRequestHeaders",
    "OperationLogRequestBody",
    "OperationLogHTTPStatusCode",
    "OperationLogResponseHeaders",
    "OperationLogResponseBody",
)
FLUSH_AT = 64 * 1024

Rows = Callable[[], Iterable[dict[str, str]]]


@dataclass
@dataclass(frozen=True)
class _Part:
    number: int
    rows: Rows
    gzip: bool
    signature: str


def render_part(rows: Iterable[dict[str, str]], *, gzip: bool) -> Iterator[bytes]:
    """A part file as the vendor writes it: BOM, header row, `;` CSV, optionally gzipped."""
    compressor = zlib.compressobj(wbits=31) if gzip else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(COLUMNS)

    def drain() -> bytes:
        data = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return compressor.compress(data) if compressor else data

    for row in rows:
        writer.writerow([row.get(column, "") for column in COLUMNS])
        if buffer.tell() >= FLUSH_AT:
            data = drain()
            if data:
                yield data
    data = drain()
    if compressor:
        data += compressor.flush()
    if data:
        yield data


class MaestraFiles(Simulator):
    """Signed part URLs on their own 127.0.0.1 port; started by `MaestraSimulator`."""

    provider = "maestra-files"

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[str, _Part] = {}
        #: Every request that came with an `Authorization` header (it must stay empty).
        self.auth_seen: list[SimRequest] = []
        self._failing: dict[int, int] = {}

    def fail_part(self, number: int, status: int = 403) -> None:
        """The next download of part `number` (1-based, of any export) answers `status`, once."""
        with self.lock:
            self._failing[number] = status

    def publish(
        self, path: str, rows: Rows, *, number: int, gzip: bool, base: str | None = None
    ) -> str:
        """Serve part `number` made by `rows()` at `path`; its signed URL (on `base` if given)."""
        part = _Part(number, rows, gzip, secrets.token_urlsafe(12))
        with self.lock:
            self.parts[path] = part
        return f"{base or self.base_url}{path}?X-Signature={part.signature}&X-Expires=3600"

    def handle(self, request: SimRequest) -> SimResponse:
        """Serve a part; refuse a second authentication mechanism, as signed storage does."""
        if request.header("Authorization") is not None:
            self.auth_seen.append(request)
            return SimResponse.text(
                "InvalidArgument: only one auth mechanism allowed; the URL is already signed", 400
            )
        if request.method != "GET":
            return SimResponse.text("MethodNotAllowed", 405)
        part = self.parts.get(request.path)
        if part is None:
            return SimResponse.text("NoSuchKey: the specified key does not exist", 404)
        if request.arg("X-Signature") != part.signature:
            return SimResponse.text("SignatureDoesNotMatch", 403)
        name = request.path.rsplit("/", 1)[-1]
        status = self._failing.pop(part.number, None)
        if status is not None:
            return SimResponse.text(f"simulated HTTP {status} for {name}", status)
        return SimResponse(
            200,
            headers={
                "Content-Type": "application/octet-stream" if part.gzip else "text/csv",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
            chunks=render_part(part.rows(), gzip=part.gzip),
        )
