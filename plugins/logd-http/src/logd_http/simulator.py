"""An events API none of the five vendors has: cursor tokens in `Link` headers, epoch-ms times.

`GET /v1/events` lists webhook-delivery events newest first, `limit` at most 50 a page. The
next page is only in an RFC 8288 `Link: <…?cursor=…>; rel="next"` header (an opaque keyset
token; no header on the last page), `since` (epoch milliseconds, inclusive) filters by time,
and `created` is epoch milliseconds. Auth is `Authorization: Bearer <key>` or the same key as
`?api_key=`; errors are `{"error": {"message": …}}`. `link_base` points the links at another
origin, as a misconfigured proxy would.
"""

from __future__ import annotations

import base64
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from logd.plugin.simulator import SimRequest, SimResponse, Simulator

PATH = "/v1/events"
MAX_LIMIT = 50
OUTCOMES = [("succeeded", 200, None)] * 6 + [
    ("failed", 500, "endpoint answered HTTP 500"),
    ("failed", None, "connection timed out after 10s"),
    ("retrying", 429, "endpoint asked to retry later"),
]
TYPES = ["order.created", "order.paid", "invoice.sent", "customer.updated"]


def description(base_url: str, api_key: str) -> dict[str, Any]:
    """The complete `[[sources]]` keys of an `http` source reading this API."""
    return {
        "provider": "http",
        "base_url": base_url,
        "request": {"path": PATH, "params": {"limit": MAX_LIMIT}},
        "auth": {"bearer": {"token": api_key}},
        "records": {
            "path": "data",
            "id": "id",
            "timestamp": {"path": "created", "format": "epoch_ms"},
            "message": "error || join(' ', [type, 'to', endpoint.id || '?'])",
            "error": {"path": "error", "only_on_failure": True, "default": "failed"},
            "entity_type": "type",
            "entity_id": "endpoint.id",
        },
        "status": [
            {"path": "outcome", "op": "==", "value": "failed", "status": "failure"},
            {"path": "outcome", "op": "==", "value": "retrying", "status": "pending"},
        ],
        "paging": {"link": {"rel": "next"}},
        "incremental": {
            "param": "since",
            "format": "epoch_ms",
            "lookback": "1h",
            "order": "newest_first",
        },
    }


class EventsSimulator(Simulator):
    """The example events API on 127.0.0.1."""

    provider = "http"

    def __init__(self, *, api_key: str = "events-demo-key", records: int = 120, seed: int = 5):
        super().__init__()
        self.api_key = api_key
        self.rng = random.Random(seed)
        self.link_base: str | None = None
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._ids = threading.Lock()
        self.add_records(records, spread=timedelta(days=3))

    def add_records(
        self, n: int, *, at: datetime | None = None, spread: timedelta = timedelta(0)
    ) -> list[dict[str, Any]]:
        """Add `n` events created `at` (default now) minus up to `spread`."""
        end = at or datetime.now(UTC)
        whens = sorted(end - spread * self.rng.random() for _ in range(n))
        made = [self.make_record(when) for when in whens]
        with self.lock:
            self.events.extend(made)
        return made

    def make_record(self, when: datetime) -> dict[str, Any]:
        """One delivery event."""
        with self._ids:
            self._next_id += 1
            number = self._next_id
        outcome, status, error = self.rng.choice(OUTCOMES)
        return {
            "id": f"evt_{number:06d}",
            "created": int(when.timestamp() * 1000),
            "type": self.rng.choice(TYPES),
            "outcome": outcome,
            "endpoint": {"id": f"ep_{self.rng.randint(1, 4)}"},
            "response_status": status,
            "error": error,
        }

    def tick(self) -> None:
        """A few new events, as the live API grows between polls."""
        self.add_records(self.rng.randint(1, 4))

    def demo_source(self, name: str) -> dict[str, Any]:
        """The complete `[[sources]]` table for this simulator."""
        return {"name": name, **description(self.base_url, self.api_key), "interval": "30s"}

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Serve the event list."""
        if request.path != PATH:
            return _error(404, "no such route")
        if request.method != "GET":
            return _error(405, "method not allowed")
        auth = request.header("Authorization")
        key = auth.removeprefix("Bearer ") if auth and auth.startswith("Bearer ") else None
        key = key or request.arg("api_key")
        if key != self.api_key:
            return _error(401, "invalid API key" if key else "no API key given")
        try:
            limit = min(int(request.arg("limit", "20") or 20), MAX_LIMIT)
            since = int(request.arg("since", "0") or 0)
            after = _decode(request.arg("cursor"))
        except ValueError:
            return _error(400, "invalid limit, since or cursor")
        rows = sorted(
            (e for e in self.events if e["created"] >= since),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        if after is not None:
            rows = [e for e in rows if (e["created"], e["id"]) < after]
        page = rows[:limit]
        headers = {}
        if len(rows) > limit:
            last = page[-1]
            params = {k: v[0] for k, v in request.query.items() if k not in ("cursor", "api_key")}
            params["cursor"] = _encode(last["created"], last["id"])
            base = self.link_base or f"http://{request.header('Host')}"
            headers["Link"] = f'<{base}{PATH}?{urlencode(params)}>; rel="next"'
        return SimResponse.json({"data": page}, headers=headers)


def _error(status: int, message: str) -> SimResponse:
    return SimResponse.json({"error": {"message": message}}, status)


def _encode(created: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created}:{event_id}".encode()).decode().rstrip("=")


def _decode(token: str | None) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, event_id = raw.split(":", 1)
        return int(created), event_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
