"""A Pegasus Gateway simulator: login, changelogs and modifications as the vendor serves them.

The API lives under `/api`, like a real site root (`api_url` is the `base_url` to configure).
Faithful to the vendor page and SOURCES.md:

- `POST /api/login` with JSON `{username, password}` answers `{"auth": token}`; every other
  call needs `Authenticate: <token>` and gets a 401 with a JSON `message` otherwise.
- `GET /api/changelogs`: newest first by `system_time`, `limit` (default 25, at most 100) and
  `offset`, body `{count, total, offset, query, data}`; summary rows unless `full=1` (or
  `ids`), which adds `request` and `response` (`status`, `status_code`, `data`). Filters
  `methods`, `path` (a regex), `user_ids`, `ids`.
- `GET /api/changelogs/modifications`: what successful PUTs changed, one item per object,
  over `[from, to)` (default: today). The window's changelogs, newest first, are cut into
  sections of `section_size`; a section's changes (one per object a changelog touches) are
  its universe, `pointer` is a position in it, so it jumps over changes that do not match,
  and `next_pointer` is the position of a full page's last item, which therefore comes back
  first on the next page.
- A scoped user (`user_id=16&write=vehicles,assets`) matches `user_ids=16` (inferred).

Switches besides the base class's: `expire_sessions()`, `session_uses` (how many requests a
new session serves), `insert_per_page` (new changelogs written after each changelogs page).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from logd import SimRequest, SimResponse, Simulator, parse_timestamp

PREFIX = "/api"
RESOURCES = ("vehicles", "assets", "geofences", "geofence_types")
USERS = ("1", "3", "60", "user_id=16&write=vehicles,assets")
FAILURES = (
    (400, "400 BAD REQUEST", "Invalid value for properties.OrderNumber"),
    (403, "403 FORBIDDEN", "User has no write permission on this resource"),
    (404, "404 NOT FOUND", "Resource not found"),
    (500, "500 INTERNAL SERVER ERROR", "Unexpected error, please contact support"),
)
UNAUTHORIZED = "Invalid or expired session, please login again"


class PegasusSimulator(Simulator):
    """Pegasus Gateway's changelogs API on 127.0.0.1."""

    provider = "pegasus"

    def __init__(
        self,
        *,
        username: str = "admin@pegasus.example",
        password: str = "demo-password",
        token: str = "pegasus-demo-token",
        records: int = 600,
        section_size: int = 250,
        seed: int = 3,
        failure_rate: float = 0.15,
        now: datetime | None = None,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.token = token
        self.section_size = section_size
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        #: Live login sessions: token → requests left (None: until expired).
        self.sessions: dict[str, int | None] = {}
        self.session_uses: int | None = None
        self.insert_per_page = 0
        #: A paging fault: modification pages come back empty while `next_pointer` moves on.
        self.empty_modification_pages = False
        self.changelogs: list[dict[str, Any]] = []
        self.add_changelogs(records, at=now, spread=timedelta(days=10))

    # -- data -------------------------------------------------------------------------------

    def add_changelogs(
        self, n: int, *, at: datetime | None = None, spread: timedelta = timedelta(0)
    ) -> list[dict[str, Any]]:
        """Write `n` changelogs timestamped `at` (default now) minus up to `spread`."""
        made = []
        with self.lock:
            for _ in range(n):
                when = (at or datetime.now(UTC)) - spread * self.rng.random()
                made.append(self.make_changelog(when))
            self.changelogs.extend(made)
        return made

    def make_changelog(self, when: datetime) -> dict[str, Any]:
        """One changelog shaped like the vendor's `full=1` results."""
        rng = self.rng
        method = rng.choice(("PUT", "PUT", "PUT", "POST", "DELETE"))
        resource = rng.choice(("vehicles", "vehicles", "vehicles", "assets", "geofences"))
        objects = [rng.randint(1, 60)]
        data: dict[str, Any] = {}
        path = f"/api/{resource}/{objects[0]}"
        if method == "PUT":
            data = rng.choice(
                (
                    {"properties": {"OrderNumber": rng.randint(8012600000, 8012699999)}},
                    {"name": f"Unit {rng.randint(100, 999)}"},
                    {"properties": {"certified": rng.random() < 0.5}},
                    {
                        "name": f"Unit {rng.randint(100, 999)}",
                        "properties": {"OrderNumber": rng.randint(8012600000, 8012699999)},
                    },
                )
            )
            if rng.random() < 0.3:  # one request, several objects
                objects = rng.sample(range(1, 61), rng.randint(2, 4))
                path = f"/api/{resource}"
                data = {"ids": objects, **data}
        elif method == "POST":
            path = f"/api/{resource}"
            data = {"name": f"Unit {rng.randint(100, 999)}"}
        failed = rng.random() < self.failure_rate
        if failed:
            code, status, text = rng.choice(FAILURES)
            response: dict[str, Any] = {
                "status": status,
                "status_code": code,
                "data": {"message": text},
            }
        else:
            code = 201 if method == "POST" else 200
            status = "201 CREATED" if code == 201 else "200 OK"
            body = {"id": objects[0], **{k: v for k, v in data.items() if k != "ids"}}
            response = {"status": status, "status_code": code, "data": body}
        return {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "path": path,
            "method": method,
            "system_time": when.astimezone(UTC).isoformat(timespec="microseconds"),
            "user_id": rng.choice(USERS),
            "request": {"data": data},
            "response": response,
        }

    def newest_first(self) -> list[dict[str, Any]]:
        """Every changelog, newest first, as the API orders them."""
        with self.lock:
            # Same format and zone everywhere, so the string sorts like the time.
            return sorted(self.changelogs, key=lambda r: (r["system_time"], r["id"]), reverse=True)

    def modifications_of(
        self,
        record: dict[str, Any],
        resource: str,
        *,
        changes: tuple[str, ...] = (),
        ids: tuple[int, ...] = (),
        groups: tuple[int, ...] = (),
    ) -> list[dict[str, Any]]:
        """The modification items one changelog yields for this query (successful PUTs only)."""
        found = (
            _modification(record, obj, resource, changes, ids, groups) for obj in _objects(record)
        )
        return [item for item in found if item is not None]

    def tick(self) -> None:
        """A few new changelogs, as the live API grows between polls."""
        self.add_changelogs(self.rng.randint(1, 4))

    @property
    def api_url(self) -> str:
        """The site's API root: what a source's `base_url` is."""
        return f"{self.base_url}{PREFIX}"

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table for this simulator, with one modifications item."""
        return {
            "name": name,
            "provider": "pegasus",
            "base_url": self.api_url,
            "username": self.username,
            "password": self.password,
            "interval": "30s",
            "modifications": [
                {"resource": "vehicles", "changes": ["properties.OrderNumber", "name"]}
            ],
        }

    # -- the provider contract (logd.plugin.contract) --------------------------------------

    login_path = "/api/login"

    @classmethod
    def for_contract(cls) -> PegasusSimulator:
        """Three pages of changelogs."""
        return cls(records=250)

    def native_ids(self) -> set[str]:
        """Changelog ids and `{$$id}:{$$object}` of the demo item's modifications."""
        with self.lock:
            records = list(self.changelogs)
        ids = {str(r["id"]) for r in records}
        item = self.demo_source("")["modifications"][0]
        for record in records:
            for mod in self.modifications_of(
                record, item["resource"], changes=tuple(item["changes"])
            ):
                ids.add(f"{mod['$$id']}:{mod['$$object']}")
        return ids

    def credential_keys(self) -> tuple[str, ...]:
        """The login password (the user name is not a secret)."""
        return ("password",)

    # -- switches ---------------------------------------------------------------------------

    def expire_sessions(self) -> None:
        """End every login session, as an hour idle does."""
        with self.lock:
            self.sessions.clear()

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Route to login, changelogs or modifications."""
        path = request.path.rstrip("/")
        if path == f"{PREFIX}/login":
            if request.method != "POST":
                return _message("Method not allowed", 405)
            return self._login(request)
        routes = {
            f"{PREFIX}/changelogs": self._changelogs,
            f"{PREFIX}/changelogs/modifications": self._modifications,
        }
        route = routes.get(path)
        if route is None:
            return _message("Not found", 404)
        if request.method != "GET":
            return _message("Method not allowed", 405)
        refused = self._check_session(request)
        return refused or route(request)

    def _login(self, request: SimRequest) -> SimResponse:
        try:
            body = request.json()
        except ValueError:
            return _message("Expected a JSON body", 400)
        if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
            return _message("username and password are required", 400)
        if (body["username"], body["password"]) != (self.username, self.password):
            return _message("Invalid username or password", 401)
        token = uuid.uuid4().hex
        self.sessions[token] = self.session_uses
        return SimResponse.json({"auth": token})

    def _check_session(self, request: SimRequest) -> SimResponse | None:
        token = request.header("Authenticate")
        if not token:
            return _message("Authenticate header is required", 401)
        if token == self.token:
            return None
        if token not in self.sessions:
            return _message(UNAUTHORIZED, 401)
        left = self.sessions[token]
        if left is not None:
            if left <= 0:
                del self.sessions[token]
                return _message(UNAUTHORIZED, 401)
            self.sessions[token] = left - 1
        return None

    def _changelogs(self, request: SimRequest) -> SimResponse:
        try:
            limit = min(int(request.arg("limit") or 25), 100)
            offset = int(request.arg("offset") or 0)
        except ValueError:
            return _message("limit and offset must be integers", 400)
        rows = self.newest_first()
        query: dict[str, Any] = {}
        methods = _split(request.arg("methods"))
        if methods:
            wanted = {m.upper() for m in methods}
            rows = [r for r in rows if r["method"] in wanted]
            query["methods"] = sorted(wanted)
        if request.arg("path"):
            try:
                pattern = re.compile(request.arg("path") or "")
            except re.error:
                return _message("path is not a valid regular expression", 400)
            rows = [r for r in rows if pattern.search(r["path"])]
            query["path"] = pattern.pattern
        users = _split(request.arg("user_ids"))
        if users:
            rows = [r for r in rows if _base_user(r["user_id"]) in users]
            query["user_ids"] = users
        ids = _split(request.arg("ids"))
        if ids:
            rows = [r for r in rows if r["id"] in ids]
            query["ids"] = ids
        full = request.arg("full") in ("1", "true", "True") or "ids" in query
        page = rows[offset : offset + limit]
        data = (
            page
            if full
            else [
                {k: r[k] for k in ("path", "system_time", "user_id", "id", "method")} for r in page
            ]
        )
        answer = SimResponse.json(
            {"count": len(page), "query": query, "total": len(rows), "data": data, "offset": offset}
        )
        if self.insert_per_page:
            self.add_changelogs(self.insert_per_page)
        return answer

    def _modifications(self, request: SimRequest) -> SimResponse:
        resource = request.arg("resource")
        if resource not in RESOURCES:
            return _message(f"resource must be one of {', '.join(RESOURCES)}", 400)
        try:
            changes = tuple(_split(request.arg("changes")))
            ids = tuple(int(v) for v in _split(request.arg("ids")))
            groups = tuple(int(v) for v in _split(request.arg("groups")))
            limit = min(int(request.arg("limit") or 100), 100)
            pointer = int(request.arg("pointer") or 0)
            section = int(request.arg("section") or 1)
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            start = parse_timestamp(request.arg("from") or today.isoformat())
            end = parse_timestamp(request.arg("to") or (today + timedelta(days=1)).isoformat())
        except ValueError as exc:
            return _message(f"invalid query: {exc}", 400)
        window = [
            r for r in self.newest_first() if start <= parse_timestamp(r["system_time"]) < end
        ]
        sections = max(1, math.ceil(len(window) / self.section_size))
        chunk = window[(section - 1) * self.section_size : section * self.section_size]
        universe = [(record, obj) for record in chunk for obj in _objects(record)]
        items: list[dict[str, Any]] = []
        last = -1
        for index in range(pointer, len(universe)):
            record, obj = universe[index]
            item = _modification(record, obj, resource, changes, ids, groups)
            if item is not None:
                items.append(item)
                last = index
                if len(items) >= limit:
                    break
        # A full page points at its own last item: the next page starts with it again.
        next_pointer = last if len(items) >= limit else -1
        if self.empty_modification_pages:
            items, next_pointer = [], pointer + limit
        query = {
            "resource": resource,
            "pointer": pointer,
            "section": section,
            "ids": list(ids),
            "to": end.isoformat(),
            "limit": limit,
            "from": start.isoformat(),
            "changes": list(changes),
        }
        if groups:
            query["groups"] = list(groups)
        return SimResponse.json(
            {
                "count": len(items),
                "query": query,
                "data": items,
                "next_pointer": next_pointer,
                "sections": sections,
            }
        )


def _objects(record: dict[str, Any]) -> list[int | None]:
    """The objects a changelog touched: its changes in the modifications universe."""
    if record["method"] != "PUT":
        return [None]
    data = record["request"]["data"]
    return list(data.get("ids") or [int(record["path"].rsplit("/", 1)[1])])


def _modification(
    record: dict[str, Any],
    obj: int | None,
    resource: str,
    changes: tuple[str, ...],
    ids: tuple[int, ...],
    groups: tuple[int, ...],
) -> dict[str, Any] | None:
    """The item one object of one changelog yields for this query, if it matches."""
    if obj is None or record["response"]["status_code"] >= 400:
        return None
    if not record["path"].startswith(f"/api/{resource}"):
        return None
    if (ids and obj not in ids) or (groups and group_of(obj) not in groups):
        return None
    data = record["request"]["data"]
    changed = _flatten({k: v for k, v in data.items() if k != "ids"})
    if changes:
        changed = {k: v for k, v in changed.items() if k in changes}
        if not changed:
            return None
    return {
        **changed,
        "$$user_id": record["user_id"],
        "$$id": record["id"],
        "$$system_time": record["system_time"],
        "$$object": obj,
    }


def _base_user(user_id: str) -> str:
    """`16` for a scoped user `user_id=16&write=vehicles,assets`, else the id itself."""
    if "=" in user_id:
        return parse_qs(user_id).get("user_id", [user_id])[0]
    return user_id


def group_of(obj: int) -> int:
    """The group a simulated resource belongs to."""
    return 100 + obj % 3


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _message(text: str, status: int) -> SimResponse:
    return SimResponse.json({"message": text, "status": status}, status)
