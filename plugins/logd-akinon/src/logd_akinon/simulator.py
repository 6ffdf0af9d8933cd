"""An Akinon Integrator simulator: login, `/logs` and `/logs/download` as the vendor serves them.

Faithful to the vendor page and SOURCES.md: a form login that answers the token as plain
text (400 with a plain-text message on bad credentials); both `Authentication` and
`Authorization: Bearer` required (401 otherwise, or once tokens are expired); `/logs` pages
numbered from 1, at most 100, newest first, with `next`/`previous` links, and **404 for an
empty result**; `created` as epoch milliseconds in a string for main logs and a naive UTC
datetime string for sub and line logs; sub logs numbered in the same sequence as main logs
(so a client must keep them apart); downloads as real base64-encoded zip files holding one
JSON file with errors and request/response bodies.

Switches beyond the base ones: `expire_tokens()`, `corrupt_downloads(kind)`,
`fail_page(page)`, `start_log()` / `finish_log()` for logs that finish later, `next_base`,
`oldest_first`.
"""

from __future__ import annotations

import base64
import io
import random
import secrets
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from logd import SimRequest, SimResponse, Simulator

from .records import LINE, MAIN, SUB
from .session import LOGIN_PATH
from .simlogs import LogBook, zip_json

CORRUPTIONS = ("base64", "zip", "nojson")


@dataclass
class _Fault:
    page: int
    status: int
    flow: str | None
    times: int


class AkinonSimulator(LogBook, Simulator):
    """Akinon Integrator's log API on 127.0.0.1."""

    provider = "akinon"

    def __init__(
        self,
        *,
        username: str = "integrator@example.com",
        password: str = "demo-password",
        api_token: str | None = None,
        project_id: str = "98765-9876-9875",
        project_slug: str = "demo-shop",
        flows: Sequence[str] = ("flow-orders", "flow-products", "flow-stocks"),
        records: int | Mapping[str, int] = 150,
        sub_logs: int = 10,
        in_progress: int = 1,
        failure_rate: float = 0.2,
        seed: int = 7,
        now: datetime | None = None,
    ) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.project_id, self.project_slug = project_id, project_slug
        self.flows = list(flows)
        self.rng = random.Random(seed)
        self.now = now or datetime.now(UTC)
        self.failure_rate = failure_rate
        #: Tokens accepted now; `api_token` stands for one issued out of band.
        self.tokens: set[str] = {api_token} if api_token else set()
        #: Tokens the next logins hand out, in order (random ones after these).
        self.next_tokens: list[str] = []
        #: Host (with scheme) put in `next`/`previous` links; default: the request's own.
        self.next_base: str | None = None
        #: Serve oldest first, breaking the inferred order a client relies on to stop early.
        self.oldest_first = False
        #: A paging fault: True answers the first page whatever `page` asks for.
        self.ignore_page = False
        self.logs: dict[tuple[str, int], list[dict[str, Any]]] = {
            (f, t): [] for f in self.flows for t in (MAIN, SUB, LINE)
        }
        self.files: dict[int, tuple[str, Any]] = {}  # main log id → (file name, JSON)
        self._corrupt: list[str] = []
        self._page_faults: list[_Fault] = []
        self._ids = {MAIN: 1000, SUB: 1000, LINE: 5000}  # main and sub ids overlap on purpose
        for flow in self.flows:
            n = records.get(flow, 0) if isinstance(records, Mapping) else records
            start = self.now - timedelta(minutes=5)
            self.add_logs(n, flow=flow, at=start, spread=timedelta(days=10))
            for _ in range(sub_logs):
                self.add_sub_log(flow, at=self.now - timedelta(days=10 * self.rng.random()))
            for _ in range(in_progress):
                self.start_log(flow, at=self.now - timedelta(minutes=2))

    # -- data (see LogBook for the rest) -----------------------------------------------------

    def tick(self) -> None:
        """New logs; running logs finish (some failed); a new one starts."""
        with self.lock:
            running = [r["id"] for rows in self.logs.values() for r in rows if r["state"] != 3]
        for log_id in running:
            self.finish_log(log_id, failed=self.rng.random() < 0.5)
        flow = self.rng.choice(self.flows)
        self.add_logs(self.rng.randint(1, 3), flow=flow)
        self.start_log(self.rng.choice(self.flows))

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table for this simulator."""
        return {
            "name": name,
            "provider": "akinon",
            "base_url": self.base_url,
            "username": self.username,
            "password": self.password,
            "project_id": self.project_id,
            "project_slug": self.project_slug,
            "flow_ids": list(self.flows),
            "log_types": [1, 2],
            "line_logs": True,
            "interval": "30s",
        }

    # -- the provider contract (logd.plugin.contract) --------------------------------------

    login_path = "/api/nifi/login"

    @classmethod
    def for_contract(cls) -> AkinonSimulator:
        """Main logs over several pages in one flow, sub logs in another."""
        return cls(records={"flow-orders": 150, "flow-products": 20, "flow-stocks": 0}, sub_logs=5)

    def contract_source(self, name: str) -> dict[str, Any]:
        """`demo_source` with main and sub logs (line logs are API-specific)."""
        return {**self.demo_source(name), "line_logs": False}

    def native_ids(self) -> set[str]:
        """`{id}` of main logs and `sub-{id}` of sub logs of the configured flows."""
        prefix = {1: "", 2: "sub-"}
        with self.lock:
            return {
                f"{prefix[t]}{r['id']}"
                for (_flow, t), rows in self.logs.items()
                if t in prefix
                for r in rows
            }

    def credential_keys(self) -> tuple[str, ...]:
        """The login account."""
        return ("password",)

    # -- switches ---------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token issued so far is refused with 401 from now on."""
        with self.lock:
            self.tokens.clear()

    def corrupt_downloads(self, kind: str = "base64", times: int = 1) -> None:
        """The next `times` downloads are unreadable: bad base64, a bad zip, or no JSON."""
        if kind not in CORRUPTIONS:
            raise ValueError(f"kind must be one of {CORRUPTIONS}")
        with self.lock:
            self._corrupt += [kind] * times

    def fail_page(
        self, page: int, status: int = 400, *, flow: str | None = None, times: int = 1
    ) -> None:
        """Answer `status` to the next `times` requests for list page `page` (of `flow`)."""
        with self.lock:
            self._page_faults.append(_Fault(page, status, flow, times))

    @property
    def logins(self) -> int:
        """Login requests seen."""
        return len(self.requests_to(LOGIN_PATH))

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Serve login, list and download."""
        if request.path == LOGIN_PATH and request.method == "POST":
            return self._login(request)
        if request.path not in ("/logs", "/logs/download"):
            return SimResponse.text("Cannot GET " + request.path, 404)
        token = request.header("Authentication")
        bearer = request.header("Authorization")
        if not token or token not in self.tokens or bearer != f"Bearer {token}":
            return SimResponse.text("Unauthorized: invalid or missing token", 401)
        if request.path == "/logs":
            return self._list(request)
        return self._download(request)

    def _login(self, request: SimRequest) -> SimResponse:
        form = request.form()
        if form.get("username") != self.username or form.get("password") != self.password:
            return SimResponse.text("Invalid username or password.", 400)
        token = self.next_tokens.pop(0) if self.next_tokens else secrets.token_urlsafe(24)
        self.tokens.add(token)
        return SimResponse.text(token)

    def _list(self, request: SimRequest) -> SimResponse:
        try:
            flow, log_type = request.arg("flowId"), int(request.arg("log_type") or 0)
            limit, page = int(request.arg("limit") or 25), int(request.arg("page") or 1)
        except ValueError:
            return SimResponse.text("limit, page and log_type must be integers", 400)
        if not flow or request.arg("projectid") != self.project_id or log_type not in (1, 2, 3):
            return SimResponse.text("projectid, flowId and log_type are required", 400)
        if not 1 <= limit <= 100 or page < 1:
            return SimResponse.text("limit must be 1-100 and page at least 1", 400)
        for fault in self._page_faults:
            if fault.page == page and fault.flow in (None, flow):
                fault.times -= 1
                if fault.times <= 0:
                    self._page_faults.remove(fault)
                return SimResponse.text(f"simulated HTTP {fault.status}", fault.status)
        rows = list(self.logs.get((flow, log_type), []))
        for name in ("filename_uuid", "original_filename_uuid"):
            if request.arg(name):
                rows = [r for r in rows if r.get(name) == request.arg(name)]
        rows.sort(key=lambda r: (_sort_key(r["created"]), r["id"]), reverse=not self.oldest_first)
        served = 1 if self.ignore_page else page
        chunk = rows[(served - 1) * limit : served * limit]
        if not chunk:
            return SimResponse.json({"detail": "No logs found."}, 404)
        return SimResponse.json(
            {
                "count": len(rows),
                "limit": limit,
                "page": page,
                "previous": self._link(request, page - 1) if page > 1 else None,
                "next": self._link(request, page + 1) if page * limit < len(rows) else None,
                "results": [dict(r) for r in chunk],
            }
        )

    def _link(self, request: SimRequest, page: int) -> str:
        params = {k: v[0] for k, v in request.query.items()}
        params["page"] = str(page)
        base = self.next_base or f"http://{request.header('Host')}"
        return f"{base}/logs?{urlencode(params)}"

    def _download(self, request: SimRequest) -> SimResponse:
        required = ("id", "flowId", "projectid", "projectslug")
        if any(not request.arg(k) for k in required):
            return SimResponse.text(f"{', '.join(required)} are required", 400)
        project = (request.arg("projectid"), request.arg("projectslug"))
        if project != (self.project_id, self.project_slug):
            return SimResponse.text("Unknown project", 400)
        try:
            name, payload = self.files[int(request.arg("id") or 0)]
        except (KeyError, ValueError):
            return SimResponse.text("Log not found", 400)
        if self._corrupt:
            kind = self._corrupt.pop(0)
            if kind == "base64":
                return SimResponse.text("%%% this is not base64 %%%")
            if kind == "zip":
                return SimResponse.text(base64.b64encode(b"PK\x03\x04 truncated").decode())
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("log.txt", "plain text, no JSON here")
            return SimResponse.text(base64.b64encode(buffer.getvalue()).decode())
        return SimResponse.text(zip_json(name, payload))


def _sort_key(created: str) -> float:
    if created.isdigit():
        return int(created) / 1000
    return datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
