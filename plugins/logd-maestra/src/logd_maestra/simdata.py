"""The simulator's data: operation-log rows, generated bulk rows, export jobs and their checks."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

PATH = "/v3/operations/sync"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
OPERATIONS = (
    ("Website.AuthorizeCustomer", "Authorize customer on website"),
    ("Website.CreateOrder", "Create order"),
    ("MobileApp.ApplyBonuses", "Apply bonus points"),
    ("Pos.CalculateCart", "Calculate cart at POS"),
    ("Website.SubscribeCustomer", "Subscribe customer"),
)
ENDPOINTS = (("Website", "Website"), ("MobileApp", "Mobile app"), ("PosTerminal", "POS terminals"))
ERRORS = (
    "Customer not found by email",
    "Timeout while calling the loyalty engine after 30s",
    "Order with this id already exists",
    "Internal error in the promo calculation",
)
WARNINGS = ("Field customer.birthDate ignored: invalid date", "Unknown area code skipped")
GzipMode = Literal["alternate", "always", "never"]


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _micros(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def make_row(
    txid: str,
    when: datetime,
    *,
    status: str,
    operation: int,
    endpoint: int,
    error: str = "",
    warning: str = "",
    device: str = "",
) -> dict[str, str]:
    """One operation-log row shaped like the vendor's columns."""
    system, op_name = OPERATIONS[operation % len(OPERATIONS)]
    external, integration = ENDPOINTS[endpoint % len(ENDPOINTS)]
    done = status != "processing"
    code = {"completed": "200", "failed": "500" if "Internal" in error else "400"}.get(status, "")
    body = json.dumps({"customer": {"ids": {"externalId": txid[:8]}, "note": "a;b"}})
    return {
        "OperationLogTransactionId": txid,
        "OperationLogStartDateTimeUtc": _fmt(when),
        "OperationLogEndDateTimeUtc": _fmt(when + timedelta(milliseconds=180)) if done else "",
        "OperationLogOperationSystemName": system,
        "OperationLogOperationName": op_name,
        "OperationLogEndpointExternalId": external,
        "OperationLogIntegrationName": integration,
        "OperationLogHasErrors": "true" if (status == "failed" or warning) else "false",
        "OperationLogErrorMessages": error or warning,
        "OperationLogDevice": device,
        "OperationLogStatus": status,
        "OperationLogHttpMethod": "POST",
        "OperationLogUrl": f"https://api.maestra.io/v3/operations/sync?operation={system}",
        "OperationLogRequestHeaders": "Content-Type: application/json\r\nAccept: application/json",
        "OperationLogRequestBody": body,
        "OperationLogHTTPStatusCode": code,
        "OperationLogResponseHeaders": "Content-Type: application/json" if done else "",
        "OperationLogResponseBody": json.dumps({"status": "Success"}) if done else "",
    }


@dataclass(frozen=True)
class Bulk:
    """`count` calls spread evenly over `[since, till)`, made up only when a part is sent."""

    count: int
    since: datetime
    till: datetime
    prefix: str

    def _time_us(self, index: int) -> int:
        span = _micros(self.till) - _micros(self.since)
        return _micros(self.since) + span * index // self.count

    def indexes(self, since: datetime, till: datetime) -> range:
        """Row numbers whose start time falls in `[since, till)`."""
        rows = range(self.count)
        lo = bisect.bisect_left(rows, _micros(since), key=self._time_us)
        hi = bisect.bisect_left(rows, _micros(till), key=self._time_us)
        return range(lo, hi)

    def row(self, index: int) -> dict[str, str]:
        """Row `index`: every 20th failed, every 50th still processing."""
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self._time_us(index))
        status = "failed" if index % 20 == 7 else "processing" if index % 50 == 3 else "completed"
        return make_row(
            f"{self.prefix}-{index:08d}",
            when,
            status=status,
            operation=index,
            endpoint=index // 3,
            error=ERRORS[index % len(ERRORS)] if status == "failed" else "",
        )


@dataclass
class Export:
    """One export job as the simulator tracks it."""

    id: str
    key: str
    since: datetime
    till: datetime
    filters: dict[str, Any]
    checks_left: int
    state: str = "NotReady"
    cancel_reason: str | None = None
    urls: list[str] = field(default_factory=list)
    rows: int = 0


def validate_start(
    body: dict[str, Any],
) -> tuple[list[tuple[str, str]], datetime | None, datetime | None]:
    """Problems with an export start as `(message, location)`, and its window."""
    problems: list[tuple[str, str]] = []
    times: dict[str, datetime] = {}
    for name in ("sinceDateTimeUtc", "tillDateTimeUtc"):
        value = body.get(name)
        if not isinstance(value, str) or not TIME_RE.match(value):
            problems.append((f"Expected UTC YYYY-MM-DD hh:mm, got {value!r}", f"/{name}"))
        else:
            times[name] = datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    since, till = times.get("sinceDateTimeUtc"), times.get("tillDateTimeUtc")
    if since and till and since >= till:
        problems.append(("Start must be before end", "/tillDateTimeUtc"))
    if body.get("resultState", "completed") not in ("completed", "failed", "processing"):
        problems.append((f"Unknown result state {body['resultState']!r}", "/resultState"))
    if "hasErrors" in body and body["hasErrors"] not in (True, False, "true", "false"):
        problems.append(("Expected true or false", "/hasErrors"))
    known_ops = {s for s, _ in OPERATIONS}
    for i, item in enumerate(body.get("operations") or []):
        system = ((item or {}).get("ids") or {}).get("systemName")
        if system not in known_ops:
            problems.append(
                (
                    f"Operation with system name {system!r} not found",
                    f"/operations/{i}/ids/systemName",
                )
            )
    external = ((body.get("endpoint") or {}).get("ids") or {}).get("externalId")
    if "endpoint" in body and external not in {e for e, _ in ENDPOINTS}:
        problems.append((f"Endpoint {external!r} not found", "/endpoint/ids/externalId"))
    return problems, since, till


def wanted(row: dict[str, str], export: Export) -> bool:
    """True when `row` falls in the export's window and passes its filters."""
    when = datetime.fromisoformat(row["OperationLogStartDateTimeUtc"]).replace(tzinfo=UTC)
    if not export.since <= when < export.till:
        return False
    f = export.filters
    if "resultState" in f and row["OperationLogStatus"] != f["resultState"]:
        return False
    if "hasErrors" in f and row["OperationLogHasErrors"] != str(f["hasErrors"]).lower():
        return False
    endpoint = ((f.get("endpoint") or {}).get("ids") or {}).get("externalId")
    if endpoint and row["OperationLogEndpointExternalId"] != endpoint:
        return False
    names = {((o or {}).get("ids") or {}).get("systemName") for o in f.get("operations") or []}
    return not names or row["OperationLogOperationSystemName"] in names
