"""A FleetIT API simulator: `GET /v2/integrations/logs/` as the vendor serves it.

Faithful to the vendor page and SOURCES.md: Bearer token and `Fleet-Id` checks with DRF-style
`{"detail": …}` errors, `limit` capped at 100, `offset`, `next`/`previous` links that say
`http://` whatever the scheme (or point at `next_base` when set), `timestamp_after` /
`timestamp_before` as inclusive dates in the server's zone (UTC-4 here), and an order that is
by integration, not time, so a client that stops early misses records. `paging` switches on a
paging fault (a stuck `next`, an ignored offset, endless empty pages).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from logd import SimRequest, SimResponse, Simulator

SERVER_TZ = timezone(timedelta(hours=-4))
PATH = "/v2/integrations/logs/"
ENTITY_TYPES = ["Ticket", "Parking", "Violation", "Vehicle", "Transponder", "Authentication"]
FILTERS = ("integration", "entity_id", "entity_type", "success")
ERRORS = [
    "Timeout while contacting Fleetio after 30s",
    "Connection refused by rentcentric.example",
    "Invalid license plate state: XX",
    "Webhook endpoint answered 502 Bad Gateway",
]


@dataclass
class _Fleet:
    id: str
    records: list[dict[str, Any]]


class FleetITSimulator(Simulator):
    """FleetIT's integration-log API on 127.0.0.1."""

    provider = "fleetit"

    def __init__(
        self,
        *,
        token: str = "fleet-demo-token",
        fleets: tuple[str, ...] = ("1",),
        records: int = 250,
        seed: int = 7,
        now: datetime | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.rng = random.Random(seed)
        self.now = now or datetime.now(UTC)
        self.next_base: str | None = None
        #: A paging fault to serve: "stuck" (`next` keeps pointing at the offset asked for),
        #: "ignored" (every offset answers the first page) or "empty" (no results, yet a
        #: `next` link, forever); None: the vendor's paging.
        self.paging: str | None = None
        #: Records added (sorting first) before each list request, as a busy log grows.
        self.grow = 0
        self._next_id = 100_000
        self._ids = threading.Lock()
        self.fleets = {fid: _Fleet(fid, []) for fid in fleets}
        self._views: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.default_fleet = fleets[0]
        for fid in fleets:
            self.add_records(records, fleet=fid, spread=timedelta(days=10))

    # -- data -------------------------------------------------------------------------------

    def add_records(
        self,
        n: int,
        *,
        fleet: str | None = None,
        at: datetime | None = None,
        spread: timedelta = timedelta(0),
        failure_rate: float = 0.2,
    ) -> list[dict[str, Any]]:
        """Add `n` log records, timestamped `at` (default now) minus up to `spread`."""
        end = at or datetime.now(UTC)
        # Ids follow creation time, as a log table's do: the older record has the lower id.
        whens = sorted(end - spread * self.rng.random() for _ in range(n))
        made = [self.make_record(when, failed=self.rng.random() < failure_rate) for when in whens]
        with self.lock:
            self.fleets[fleet or self.default_fleet].records.extend(made)
        return made

    def make_record(
        self, when: datetime, *, failed: bool, error: str | None = None
    ) -> dict[str, Any]:
        """One record shaped like the vendor's example."""
        with self._ids:
            self._next_id += 1
            rid = self._next_id
        entity_type = self.rng.choice(ENTITY_TYPES)
        err = error or (self.rng.choice(ERRORS) if failed else None)
        return {
            "id": rid,
            "integration": self.rng.choice([49, 50, 51]),
            "timestamp": when.astimezone(SERVER_TZ).isoformat(),
            "direction": self.rng.choice(["Receiving", "Sending"]),
            "success": not failed,
            "response": {
                "message": "Failed" if failed else "Success",
                "vehicles_updated": self.rng.randint(0, 5),
                "new_vehicles_added": 0,
                "unable_to_find_states": 0,
                "total_vehicles_fetched": self.rng.randint(0, 7000),
                "belongs_to_different_fleet": 0,
            },
            "details": {"payload": None, "error": err},
            "entity_type": entity_type,
            "entity_id": str(self.rng.randint(1000, 9999)) if entity_type != "Vehicle" else None,
        }

    def tick(self) -> None:
        """A few new records, as the live API grows between polls."""
        self.add_records(self.rng.randint(1, 4))

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table for this simulator."""
        return {
            "name": name,
            "provider": "fleetit",
            "base_url": self.base_url,
            "token": self.token,
            "fleet_id": self.default_fleet,
            "interval": "30s",
        }

    # -- the provider contract (logd.plugin.contract) --------------------------------------

    def native_ids(self) -> set[str]:
        """Ids of the default fleet's records: what a poll of `demo_source` stores."""
        with self.lock:
            return {str(r["id"]) for r in self.fleets[self.default_fleet].records}

    def credential_keys(self) -> tuple[str, ...]:
        """The API token."""
        return ("token",)

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Serve the integration-log list."""
        if request.path.rstrip("/") != PATH.rstrip("/"):
            return SimResponse.json({"detail": "Not found."}, 404)
        if request.method != "GET":
            return SimResponse.json({"detail": f'Method "{request.method}" not allowed.'}, 405)
        auth = request.header("Authorization")
        if auth is None:
            return SimResponse.json(
                {"detail": "Authentication credentials were not provided."}, 401
            )
        if auth != f"Bearer {self.token}":
            return SimResponse.json({"detail": "Invalid token."}, 401)
        fleet_id = request.header("Fleet-Id") or self.default_fleet
        fleet = self.fleets.get(fleet_id)
        if fleet is None:
            return SimResponse.json(
                {"detail": "You do not have permission to perform this action."}, 403
            )

        try:
            limit = min(int(request.arg("limit", "100") or 100), 100)
            offset = int(request.arg("offset", "0") or 0)
        except ValueError:
            return SimResponse.json({"detail": "Invalid limit or offset."}, 400)
        errors: dict[str, list[str]] = {}
        for name in ("timestamp_after", "timestamp_before"):
            value = request.arg(name)
            if value:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    errors[name] = ["Enter a valid date."]
        if errors:
            return SimResponse.json(errors, 400)
        for _ in range(self.grow):
            record = self.make_record(self.now, failed=False)
            record["integration"] = 0  # sorts first: every page shifts by one
            with self.lock:
                fleet.records.append(record)
        rows = self._view(fleet, request)
        served = 0 if self.paging == "ignored" else offset
        page = [] if self.paging == "empty" else rows[served : served + limit]
        following = offset + limit
        if self.paging == "stuck" and offset:
            following = offset
        return SimResponse.json(
            {
                "count": len(rows),
                "next": self._link(request, following, limit)
                if following < len(rows) or self.paging == "empty"
                else None,
                "previous": self._link(request, max(0, offset - limit), limit)
                if offset > 0
                else None,
                "results": page,
            }
        )

    def _view(self, fleet: _Fleet, request: SimRequest) -> list[dict[str, Any]]:
        """The records a query selects, in the vendor's order; kept while nothing is added.

        A backfill asks for the same view once per page: filtering and sorting every record
        on each request would make a large simulator quadratic.
        """
        query = tuple(
            request.arg(name) or "" for name in (*FILTERS, "timestamp_after", "timestamp_before")
        )
        key = (fleet.id, len(fleet.records), query)
        if self._views.get(key) is None:
            rows = fleet.records
            for name, keep in (
                ("timestamp_after", _on_or_after),
                ("timestamp_before", _on_or_before),
            ):
                value = request.arg(name)
                if value:
                    day = date.fromisoformat(value)
                    rows = [r for r in rows if keep(r, day)]
            for name in ("integration", "entity_id"):
                value = request.arg(name)
                if value:
                    rows = [r for r in rows if str(r[name]) == value]
            if request.arg("entity_type"):
                wanted = ENTITY_TYPES[int(request.arg("entity_type") or 1) - 1]
                rows = [r for r in rows if r["entity_type"] == wanted]
            if request.arg("success") in ("true", "false"):
                rows = [r for r in rows if r["success"] is (request.arg("success") == "true")]
            # Undocumented order: by integration, then id. Not by time.
            self._views = {key: sorted(rows, key=_order)}
        return self._views[key]

    def _link(self, request: SimRequest, offset: int, limit: int) -> str:
        params = {k: v[0] for k, v in request.query.items() if k not in ("offset", "limit")}
        params.update(limit=str(limit), offset=str(offset))
        # The vendor's links say http:// even on its HTTPS API.
        base = self.next_base or f"http://{request.header('Host')}"
        return f"{base}{PATH}?{urlencode(params)}"


def _order(record: dict[str, Any]) -> tuple[int, int]:
    # Records a test broke on purpose (an id of null, say) sort first instead of failing.
    integration, rid = record.get("integration"), record.get("id")
    return (
        integration if type(integration) is int else 0,
        rid if type(rid) is int else 0,
    )


def _local_date(record: dict[str, Any]) -> date | None:
    try:
        return datetime.fromisoformat(record["timestamp"]).astimezone(SERVER_TZ).date()
    except (KeyError, TypeError, ValueError):
        return None  # a record a test broke on purpose: listed whatever the filter


def _on_or_after(record: dict[str, Any], day: date) -> bool:
    local = _local_date(record)
    return local is None or local >= day


def _on_or_before(record: dict[str, Any], day: date) -> bool:
    local = _local_date(record)
    return local is None or local <= day
