"""The logs an Akinon simulator serves, and how they come and change (main, sub, line logs).

Main logs carry `created`/`finished` as epoch milliseconds in a string; sub and line logs as
naive UTC datetime strings. A failed main log gets line logs (log_type 3, linked by
`original_filename_uuid`) and a log file whose JSON names the same errors.
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from .records import LINE, MAIN, SUB

FLOW_NAMES = ["Order Export", "Product Import", "Stock Sync", "Price Sync", "Invoice Export"]
ERRORS = [
    "Product SKU {sku} not found in Akinon Commerce",
    "ERP answered 502 Bad Gateway for POST /api/orders/",
    "Stock quantity must be a positive integer, got -3 for SKU {sku}",
    "Price list 'TRY-default' does not exist",
    "Connection timeout after 30s contacting erp.example.com:443",
]


def _ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


def _naive(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def zip_json(name: str, payload: Any) -> str:
    """A zip file holding one JSON file, base64-encoded: what `/logs/download` answers."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, json.dumps(payload, indent=2))
    return base64.b64encode(buffer.getvalue()).decode()


class LogBook:
    """Log records by (flow, log type) and the files of main logs; mixed into the simulator."""

    lock: threading.RLock
    rng: random.Random
    flows: list[str]
    failure_rate: float
    logs: dict[tuple[str, int], list[dict[str, Any]]]
    files: dict[int, tuple[str, Any]]  # main log id → (file name in the zip, its JSON)
    _ids: dict[int, int]

    def _next_id(self, log_type: int) -> int:
        with self.lock:
            self._ids[log_type] += 1
            return self._ids[log_type]

    def _name(self, flow: str) -> str:
        return FLOW_NAMES[self.flows.index(flow) % len(FLOW_NAMES)]

    def start_log(self, flow: str | None = None, *, at: datetime | None = None) -> dict[str, Any]:
        """A main log that is still running (state 2, status 1) until `finish_log`."""
        flow = flow or self.flows[0]
        with self.lock:
            log: dict[str, Any] = {
                "id": self._next_id(MAIN),
                "created": _ms(at or datetime.now(UTC)),
                "finished": None,
                "state": 2,
                "status": 1,
                "process_group_id": f"pg-{flow}",
                "process_group_name": self._name(flow),
                "triggered_by": "System",
                "is_triggered": False,
                "filename_uuid": f"{self.rng.getrandbits(64):016x}-exec",
            }
            self.logs[(flow, MAIN)].append(log)
            self.files[log["id"]] = (f"{log['filename_uuid']}.json", self._payload(log, []))
        return log

    def finish_log(self, log_id: int, *, failed: bool, error: str | None = None) -> dict[str, Any]:
        """End a running main log as failed (with line logs and an error file) or successful."""
        with self.lock:
            flow, log = next(
                (f, r)
                for (f, t), rows in self.logs.items()
                if t == MAIN
                for r in rows
                if r["id"] == log_id
            )
            log_id = int(log["id"])
            created = datetime.fromtimestamp(int(log["created"]) / 1000, tz=UTC)
            took = timedelta(seconds=self.rng.randint(2, 90))
            log.update(state=3, status=3 if failed else 2, finished=_ms(created + took))
            errors = self._errors(flow, log, error) if failed else []
            self.files[log_id] = (f"{log['filename_uuid']}.json", self._payload(log, errors))
        return log

    def add_logs(
        self,
        n: int,
        *,
        flow: str | None = None,
        at: datetime | None = None,
        spread: timedelta = timedelta(0),
        failure_rate: float | None = None,
        error: str | None = None,
    ) -> list[dict[str, Any]]:
        """Add `n` finished main logs at `at` (default now) minus up to `spread`."""
        rate = self.failure_rate if failure_rate is None else failure_rate
        made = []
        for _ in range(n):
            when = (at or datetime.now(UTC)) - spread * self.rng.random()
            log = self.start_log(flow, at=when)
            made.append(self.finish_log(log["id"], failed=self.rng.random() < rate, error=error))
        return made

    def add_sub_log(self, flow: str, *, at: datetime | None = None) -> dict[str, Any]:
        """A finished sub log (datetime-string times)."""
        when = at or datetime.now(UTC)
        log = {
            "id": self._next_id(SUB),
            "created": _naive(when),
            "finished": _naive(when + timedelta(seconds=3)),
            "state": 3,
            "status": self.rng.choice([2, 2, 2, 3, 4]),
            "process_group_id": f"pg-{flow}-sub",
            "process_group_name": f"{self._name(flow)} step",
            "triggered_by": "System",
            "is_triggered": False,
            "filename_uuid": f"{self.rng.getrandbits(64):016x}-sub",
        }
        with self.lock:
            self.logs[(flow, SUB)].append(log)
        return log

    def _errors(self, flow: str, log: dict[str, Any], error: str | None) -> list[dict[str, Any]]:
        created = datetime.fromtimestamp(int(log["created"]) / 1000, tz=UTC)
        errors = []
        for line in range(1, self.rng.randint(2, 4)):
            sku = f"SKU-{self.rng.randint(10000, 99999)}"
            text = error or self.rng.choice(ERRORS).format(sku=sku)
            errors.append({"line": line, "message": text, "sku": sku})
            self.logs[(flow, LINE)].append(
                {
                    "id": self._next_id(LINE),
                    "created": _naive(created + timedelta(seconds=line)),
                    "finished": _naive(created + timedelta(seconds=line + 1)),
                    "state": 3,
                    "status": 3,
                    "original_filename_uuid": log["filename_uuid"],
                    "process_group_name": log["process_group_name"],
                    "line": line,
                    "message": text,
                    "search_field": {"sku": sku},
                }
            )
        return errors

    def _payload(self, log: dict[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "log_id": log["id"],
            "filename_uuid": log["filename_uuid"],
            "process_group_name": log["process_group_name"],
            "errors": errors,
            "request": {
                "method": "POST",
                "url": "https://erp.example.com/api/orders/",
                "body": {"lines": [{"sku": e["sku"], "quantity": 1} for e in errors]},
            },
            "response": {
                "status_code": 422 if errors else 200,
                "body": {"detail": errors[0]["message"]} if errors else {"ok": True},
            },
        }
