"""A Maestra simulator: the operation-log export as SOURCES.md describes it, on 127.0.0.1.

`POST /v3/operations/sync?endpointId=E&operation=O` with `Authorization: SecretKey …` starts
an export (body with the window) or reports on one (body `{"exportId"}`): `NotReady` for
`ready_after` checks, then `Ready` with part URLs on a second origin (`files`, which refuses
credentials), or `Cancelled` with a reason after `cancel_next()`. Bad parameters answer
`ValidationError` with `validationMessages`; at most `max_running` exports run at once, a
further start answers 429 without `Retry-After`; a start that repeats a running export's
parameters answers that export's id with `isDuplicate: true`. Calls can stay `processing`
and `settle()` later. `add_bulk()` adds rows that are generated only while a part is sent.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from logd import SimRequest, SimResponse, Simulator

from .simdata import (
    ENDPOINTS,
    ERRORS,
    OPERATIONS,
    PATH,
    WARNINGS,
    Bulk,
    Export,
    GzipMode,
    make_row,
    validate_start,
    wanted,
)
from .simfiles import MaestraFiles, Rows


class MaestraSimulator(Simulator):
    """Maestra's operation-log export on 127.0.0.1, its part files on a second port."""

    provider = "maestra"

    def __init__(
        self,
        *,
        secret_key: str = "maestra-demo-key",
        endpoint_id: str = "logd-demo",
        operation: str = "ExportOperationLogs",
        records: int = 300,
        seed: int = 11,
        now: datetime | None = None,
        ready_after: int = 2,
        part_rows: int = 1000,
        gzip: GzipMode = "alternate",
        max_running: int = 2,
    ) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.endpoint_id = endpoint_id
        self.operation = operation
        self.rng = random.Random(seed)
        self.now = now or datetime.now(UTC)
        self.ready_after = ready_after
        self.part_rows = part_rows
        self.gzip: GzipMode = gzip
        self.max_running = max_running
        self.files = MaestraFiles()
        self.records: list[dict[str, str]] = []
        self.bulks: list[Bulk] = []
        self.exports: dict[str, Export] = {}
        #: Most exports ever running at once.
        self.peak_running = 0
        #: Serve parts from the API's own origin instead of the file host (a test that the
        #: provider withholds credentials by choice, not only because the host differs).
        self.same_origin_files = False
        # Reasons for upcoming exports to be cancelled, by how many exports to let through first.
        self._cancel: list[tuple[int, str]] = []
        if records:
            # Ends before a default `lag` so that a first poll sees every record.
            self.add_records(
                records, end=self.now - timedelta(minutes=15), spread=timedelta(days=3)
            )

    # -- lifecycle: the file host comes and goes with the API -------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start the file host, then the API; the API's URL."""
        self.files.start(host)
        return super().start(host, port)

    def stop(self) -> None:
        """Stop both servers."""
        super().stop()
        self.files.stop()

    def companions(self) -> list[Simulator]:
        """The file host, served beside the API."""
        return [self.files]

    def __enter__(self) -> MaestraSimulator:
        self.start()
        return self

    # -- data -------------------------------------------------------------------------------

    def make_record(
        self,
        when: datetime,
        *,
        status: str = "completed",
        error: str | None = None,
        warning: str | None = None,
    ) -> dict[str, str]:
        """One call at `when`, with a random id, method and endpoint (not yet added)."""
        if status == "failed" and error is None:
            error = self.rng.choice(ERRORS)
        return make_row(
            str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            when,
            status=status,
            operation=self.rng.randrange(len(OPERATIONS)),
            endpoint=self.rng.randrange(3),
            error=error or "",
            warning=warning or "",
            device=str(uuid.UUID(int=self.rng.getrandbits(128))) if self.rng.random() < 0.3 else "",
        )

    def add_records(
        self,
        n: int,
        *,
        end: datetime | None = None,
        spread: timedelta = timedelta(0),
        failure_rate: float = 0.15,
        processing_rate: float = 0.05,
        warning_rate: float = 0.05,
    ) -> list[dict[str, str]]:
        """Add `n` calls started at `end` (default now) minus up to `spread`."""
        made = []
        for _ in range(n):
            when = (end or datetime.now(UTC)) - spread * self.rng.random()
            draw = self.rng.random()
            status = (
                "failed"
                if draw < failure_rate
                else "processing"
                if draw < failure_rate + processing_rate
                else "completed"
            )
            warned = status == "completed" and self.rng.random() < warning_rate
            warning = self.rng.choice(WARNINGS) if warned else None
            made.append(self.make_record(when, status=status, warning=warning))
        self.add(made)
        return made

    def add(self, rows: Iterable[dict[str, str]]) -> None:
        """Add ready-made rows (from `make_record`)."""
        with self.lock:
            self.records.extend(rows)

    def add_bulk(self, count: int, since: datetime, till: datetime, prefix: str = "bulk") -> Bulk:
        """`count` generated calls over `[since, till)`: for exports too big to keep in memory."""
        bulk = Bulk(count, since.astimezone(UTC), till.astimezone(UTC), prefix)
        with self.lock:
            self.bulks.append(bulk)
        return bulk

    def settle(self, transaction_id: str, status: str = "completed", error: str = "") -> None:
        """A call that was `processing` finishes (exports made from now on say so)."""
        with self.lock:
            for row in self.records:
                if row["OperationLogTransactionId"] == transaction_id:
                    when = datetime.fromisoformat(row["OperationLogStartDateTimeUtc"])
                    row.update(
                        make_row(
                            transaction_id,
                            when.replace(tzinfo=UTC),
                            status=status,
                            operation=_index(OPERATIONS, row["OperationLogOperationSystemName"]),
                            endpoint=_index(ENDPOINTS, row["OperationLogEndpointExternalId"]),
                            error=error or (ERRORS[0] if status == "failed" else ""),
                            device=row["OperationLogDevice"],
                        )
                    )
                    return
        raise KeyError(transaction_id)

    def cancel_next(
        self, reason: str = "Export was cancelled by an administrator", *, skip: int = 0
    ) -> None:
        """After `skip` more exports, the next one started is cancelled with this reason."""
        with self.lock:
            self._cancel.append((skip, reason))

    def hold_slots(self, n: int) -> list[str]:
        """Start `n` exports as another client of the project would (they never finish)."""
        with self.lock:
            now = datetime.now(UTC)
            return [
                self._new_export(
                    f"other-{i}-{len(self.exports)}", now, now, {}, checks=10**9, foreign=True
                ).id
                for i in range(n)
            ]

    def start_bodies(self) -> list[dict[str, Any]]:
        """The bodies of every export start seen, oldest first."""
        bodies = [r.json() for r in self.requests_to(PATH, "POST") if r.body]
        return [b for b in bodies if isinstance(b, dict) and "exportId" not in b]

    def tick(self) -> None:
        """A few new calls; some calls still processing finish (for `logd demo --keep-running`)."""
        self.add_records(self.rng.randint(1, 4))
        with self.lock:
            waiting = [r for r in self.records if r["OperationLogStatus"] == "processing"]
        for row in waiting[: self.rng.randint(0, 2)]:
            self.settle(row["OperationLogTransactionId"], self.rng.choice(["completed", "failed"]))

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table for this simulator (short lag and waits for the demo)."""
        return {
            "name": name,
            "provider": "maestra",
            "base_url": self.base_url,
            "endpoint_id": self.endpoint_id,
            "secret_key": self.secret_key,
            "operation": self.operation,
            "backfill": "3d",
            "window": "1d",
            "lag": "1m",
            "export_poll": "200ms",
            "interval": "30s",
        }

    # -- the provider contract (logd.plugin.contract) --------------------------------------

    @classmethod
    def for_contract(cls) -> MaestraSimulator:
        """The default data set with running exports not capped."""
        # A simulated export moves only when checked (the vendor's run on by themselves), so
        # the exports of a crashed poll would hold both slots for good.
        return cls(max_running=100)

    def contract_source(self, name: str) -> dict[str, Any]:
        """`demo_source` reaching back past the oldest record (it lies up to 3d15m back)."""
        return {**self.demo_source(name), "backfill": "4d"}

    def contract_now(self) -> datetime:
        """The simulator's NOW: the windows must not move while the suite runs."""
        return self.now

    def native_ids(self) -> set[str]:
        """Transaction ids of every record (all older than the demo's `lag`)."""
        with self.lock:
            return {r["OperationLogTransactionId"] for r in self.records}

    def credential_keys(self) -> tuple[str, ...]:
        """The secret key."""
        return ("secret_key",)

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Start or check an export (or serve a part, when `same_origin_files`)."""
        if request.path.startswith("/exports/") and self.same_origin_files:
            return self.files.handle(request)
        if request.path != PATH:
            return _error("ProtocolError", f"Unknown method {request.path}", 404)
        if request.method != "POST":
            return _error("ProtocolError", f"Method {request.method} not allowed", 405)
        auth = request.header("Authorization")
        if auth is None:
            return _error("ProtocolError", "Authorization header is missing", 401)
        if auth != f"SecretKey {self.secret_key}":
            return _error("ProtocolError", "Invalid secret key", 401)
        if request.arg("endpointId") != self.endpoint_id:
            return _error("ProtocolError", f"Unknown endpoint {request.arg('endpointId')!r}", 400)
        if request.arg("operation") != self.operation:
            return _error("ProtocolError", f"Operation {request.arg('operation')!r} not found", 400)
        try:
            body = request.json()
        except ValueError:
            return _error("ProtocolError", "Request body is not valid JSON", 400)
        if not isinstance(body, dict):
            return _error("ProtocolError", "Request body must be a JSON object", 400)
        if body.get("exportId"):
            return self._check(str(body["exportId"]))
        return self._start(body)

    def _start(self, body: dict[str, Any]) -> SimResponse:
        problems, since, till = validate_start(body)
        if problems:
            return SimResponse.json(
                {
                    "status": "ValidationError",
                    "validationMessages": [{"message": m, "location": loc} for m, loc in problems],
                }
            )
        assert since is not None and till is not None
        key = json.dumps(body, sort_keys=True)
        running = [e for e in self.exports.values() if e.state == "NotReady"]
        for export in running:
            if export.key == key:
                return SimResponse.json(
                    {"status": "Success", "exportId": export.id, "isDuplicate": True}
                )
        if len(running) >= self.max_running:
            # The vendor's limit answer comes without Retry-After.
            return _error(
                "ProtocolError",
                f"Too many exports in progress: at most {self.max_running} per project",
                429,
            )
        export = self._new_export(key, since, till, body, checks=self.ready_after)
        return SimResponse.json({"status": "Success", "exportId": export.id, "isDuplicate": False})

    def _new_export(
        self,
        key: str,
        since: datetime,
        till: datetime,
        body: dict[str, Any],
        *,
        checks: int,
        foreign: bool = False,
    ) -> Export:
        export = Export(
            uuid.UUID(int=self.rng.getrandbits(128), version=4).hex, key, since, till, body, checks
        )
        if self._cancel and not foreign:
            skip, reason = self._cancel[0]
            if skip:
                self._cancel[0] = (skip - 1, reason)
            else:
                export.cancel_reason = self._cancel.pop(0)[1]
        self.exports[export.id] = export
        running = sum(e.state == "NotReady" for e in self.exports.values())
        self.peak_running = max(self.peak_running, running)
        return export

    def _check(self, export_id: str) -> SimResponse:
        export = self.exports.get(export_id)
        if export is None:
            return _error("ProtocolError", f"Export {export_id} not found", 400)
        if export.state == "NotReady":
            if export.checks_left > 0:
                export.checks_left -= 1
            elif export.cancel_reason is not None:
                export.state = "Cancelled"
            else:
                self._make_ready(export)
        result: dict[str, Any] = {"processingStatus": export.state}
        if export.state == "Ready":
            result["urls"] = export.urls
        if export.state == "Cancelled":
            result["cancellationReason"] = export.cancel_reason
        return SimResponse.json({"status": "Success", "exportResult": result})

    def _make_ready(self, export: Export) -> None:
        """Fix the export's contents now (later changes need a new export) and publish parts."""
        snapshot = sorted(
            (dict(r) for r in self.records if wanted(r, export)),
            key=lambda r: r["OperationLogStartDateTimeUtc"],
        )
        factories: list[Rows] = [
            _listed(snapshot[start : start + self.part_rows])
            for start in range(0, len(snapshot), self.part_rows)
        ]
        export.rows = len(snapshot)
        for bulk in self.bulks:
            span = bulk.indexes(export.since, export.till)
            export.rows += len(span)
            for start in range(span.start, span.stop, self.part_rows):
                part = range(start, min(start + self.part_rows, span.stop))
                factories.append(_generated(bulk, part, export))
        for number, rows in enumerate(factories, 1):
            gzip = self.gzip == "always" or (self.gzip == "alternate" and number % 2 == 1)
            name = f"/exports/{export.id}/operations-{number:03d}.csv" + (".gz" if gzip else "")
            base = self.base_url if self.same_origin_files else None
            export.urls.append(self.files.publish(name, rows, number=number, gzip=gzip, base=base))
        export.state = "Ready"


def _listed(rows: list[dict[str, str]]) -> Rows:
    return lambda: iter(rows)


def _generated(bulk: Bulk, span: range, export: Export) -> Rows:
    def rows() -> Iterator[dict[str, str]]:
        for index in span:
            row = bulk.row(index)
            if wanted(row, export):
                yield row

    return rows


def _index(table: tuple[tuple[str, str], ...], name: str) -> int:
    return next((i for i, (system, _) in enumerate(table) if system == name), 0)


def _error(status: str, message: str, http_status: int) -> SimResponse:
    return SimResponse.json({"status": status, "errorMessage": message}, http_status)
