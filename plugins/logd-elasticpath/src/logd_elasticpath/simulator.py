"""An Elastic Path simulator: OAuth client credentials and the integration-log lists.

Faithful to the vendor page and SOURCES.md: `POST /oauth/access_token` issues Bearer tokens
that expire after `expires_in` seconds of `clock` (or at once on `expire_tokens()`);
`GET /v2/integrations/logs` (the whole store) and `GET /v2/integrations/{uuid}/logs` page with
`page[limit]` (at most 100) and `page[offset]`, answering `{data, meta, results: {total}}`;
errors are JSON:API `{errors: [{status, title, detail}]}`; more than `rate_limit` requests in
one second of `clock` get a 429 (with `rate_headers`, every answer says what is left in
`X-RateLimit-Limit`/`-Remaining`/`-Reset`). Records come in both shapes (with and without
`meta.timestamps`), the vendor's own `succeeded: true` + 404 example among them, in an order
that is by id, not time, so a client that reads only the last page misses records.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from logd.plugin.simulator import SimRequest, SimResponse, Simulator

TOKEN_PATH = "/oauth/access_token"
LOGS_PATH = "/v2/integrations/logs"

#: The record of the vendor page's example, verbatim: `succeeded` true, yet a 404.
VENDOR_EXAMPLE: dict[str, Any] = {
    "id": "ac8bb58e-2b9b-4ccf-9dd2-ecdf50417849",
    "type": "integration",
    "succeeded": True,
    "attempt": 1,
    "body": "Not Found",
    "status_code": 404,
    "error_detail": "Received a status code outside of 2xx range - treating webhook as a fail",
    "relationships": {
        "integration": {
            "data": {"id": "ff8634a8-a89e-4eac-baab-9b7b8c4f8720", "type": "integration"}
        },
        "job": {"data": {"id": "ff8634a8-a89e-4eac-baab-9b7b8c4f8720", "type": "job"}},
    },
}
OUTCOMES: list[tuple[bool, int, str, str]] = [
    # succeeded, status_code, body, error_detail
    (True, 200, "OK", ""),
    (True, 202, "Accepted", ""),
    (
        False,
        500,
        "Internal Server Error",
        "Received a status code outside of 2xx range - treating webhook as a fail",
    ),
    (False, 0, "", 'Post "https://erp.example/hooks": net/http: timeout awaiting response headers'),
    (True, 410, "Gone", "Received a status code outside of 2xx range - treating webhook as a fail"),
]


def jsonapi_error(status: int, title: str, detail: str | None = None) -> dict[str, Any]:
    """A JSON:API error document as Elastic Path sends it."""
    error: dict[str, Any] = {"status": status, "title": title}
    if detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


class ElasticPathSimulator(Simulator):
    """Elastic Path's OAuth and integration-log API on 127.0.0.1."""

    provider = "elasticpath"

    def __init__(
        self,
        *,
        client_id: str = "ep-demo-client-id",
        client_secret: str = "ep-demo-client-secret",
        integrations: tuple[int, ...] = (130, 80, 40),
        expires_in: int = 3600,
        rate_limit: int | None = None,
        rate_headers: bool = False,
        seed: int = 11,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        #: Lifetime of the tokens issued from now on, in seconds of `clock`.
        self.expires_in = expires_in
        #: More requests than this in one second of `clock` get a 429 (None: no limit).
        self.rate_limit = rate_limit
        #: Tell clients their budget: X-RateLimit-Limit/-Remaining/-Reset on every answer.
        self.rate_headers = rate_headers
        self.clock = clock
        #: A paging fault: True answers the first page whatever `page[offset]` asks for.
        self.ignore_offset = False
        #: Status codes answered by the API itself (fault switches not included).
        self.served: Counter[int] = Counter()
        self.rng = random.Random(seed)
        self.tokens: dict[str, float] = {}  # token -> expiry on `clock`
        self._window: tuple[int, int] = (-1, 0)  # (second, requests in it)
        # The vendor's example integration comes first, so its example record has a home.
        ids = [VENDOR_EXAMPLE["relationships"]["integration"]["data"]["id"]]
        ids += [self._uuid() for _ in integrations[1:]]
        self.integrations: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for integration, count in zip(ids, integrations, strict=True):
            self.add_records(count, integration=integration, spread=timedelta(days=10))
        if ids and integrations[0] > 0:
            self.integrations[ids[0]][0] = json.loads(json.dumps(VENDOR_EXAMPLE))

    # -- data -------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add_records(
        self,
        n: int,
        *,
        integration: str | None = None,
        spread: timedelta = timedelta(0),
        ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Add `n` records to `integration` (default: a random one), created up to `spread` ago."""
        made = []
        with self.lock:
            for i in range(n):
                target = integration or self.rng.choice(list(self.integrations))
                when = datetime.now(UTC) - spread * self.rng.random()
                record = self.make_record(target, when, record_id=ids[i] if ids else None)
                self.integrations[target].append(record)
                made.append(record)
        return made

    def make_record(
        self, integration: str, when: datetime, *, record_id: str | None = None
    ) -> dict[str, Any]:
        """One record; every other one carries `meta.timestamps` (the newer shape)."""
        succeeded, status_code, body, detail = self.rng.choice(OUTCOMES)
        record: dict[str, Any] = {
            "id": record_id or self._uuid(),
            "type": "integration",
            "succeeded": succeeded,
            "attempt": self.rng.randint(1, 3),
            "body": body,
            "status_code": status_code,
            "error_detail": detail,
            "relationships": {
                "integration": {"data": {"id": integration, "type": "integration"}},
                "job": {"data": {"id": self._uuid(), "type": "integration-job"}},
            },
        }
        if self.rng.random() < 0.5:
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record["meta"] = {"timestamps": {"created_at": stamp, "updated_at": stamp}}
        return record

    def remove_record(self, record_id: str) -> None:
        """Delete a record, as the vendor's retention does."""
        with self.lock:
            for records in self.integrations.values():
                records[:] = [r for r in records if r["id"] != record_id]

    def all_records(self, integration: str | None = None) -> list[dict[str, Any]]:
        """Records of one integration, or of the whole store, in the API's order."""
        with self.lock:
            if integration is not None:
                rows = list(self.integrations[integration])
            else:
                rows = [r for records in self.integrations.values() for r in records]
        # Undocumented order: by id, so new records land anywhere, not at one end.
        return sorted(rows, key=lambda r: str(r["id"]))

    def expire_tokens(self) -> None:
        """Revoke every issued token: the next call with one gets a 401."""
        with self.lock:
            self.tokens.clear()

    def fail_next_jsonapi(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        times: int = 1,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` requests (to `path`) with a JSON:API error."""
        self.fail_next(
            status, body=json.dumps(jsonapi_error(status, title, detail)), times=times, path=path
        )

    def tick(self) -> None:
        """A few new records, as the live store grows between polls."""
        self.add_records(self.rng.randint(1, 4))

    def demo_source(self, name: str) -> dict[str, Any]:
        """The `[[sources]]` table for this simulator (the whole store)."""
        return {
            "name": name,
            "provider": "elasticpath",
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "interval": "30s",
        }

    # -- the provider contract (logd.plugin.contract) --------------------------------------

    login_path = "/oauth/access_token"

    def native_ids(self) -> set[str]:
        """Ids of every record of the store: what a poll of `demo_source` stores."""
        return {str(r["id"]) for r in self.all_records()}

    def credential_keys(self) -> tuple[str, ...]:
        """The OAuth client credentials."""
        return ("client_id", "client_secret")

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Serve OAuth and the log lists, counting what was answered."""
        response = self._answer(request)
        self.served[response.status] += 1
        if self.rate_limit is not None and self.rate_headers:
            _, count = self._window
            response.headers["X-RateLimit-Limit"] = str(self.rate_limit)
            response.headers["X-RateLimit-Remaining"] = str(max(0, self.rate_limit - count))
            response.headers["X-RateLimit-Reset"] = "1"  # the window is one second of `clock`
        return response

    def _answer(self, request: SimRequest) -> SimResponse:
        if self._throttled():
            return SimResponse.json(
                jsonapi_error(429, "Too Many Requests", "Rate limit exceeded, slow down"),
                429,
                headers={"Retry-After": "1"},
            )
        if request.path == TOKEN_PATH:
            return self._token(request)
        integration: str | None = None
        if request.path != LOGS_PATH:
            parts = request.path.strip("/").split("/")
            if len(parts) != 4 or parts[:2] != ["v2", "integrations"] or parts[3] != "logs":
                return SimResponse.json(jsonapi_error(404, "Not Found", "Route not found"), 404)
            integration = parts[2]
        if request.method != "GET":
            return SimResponse.json(jsonapi_error(405, "Method Not Allowed"), 405)
        auth = request.header("Authorization") or ""
        token = auth.removeprefix("Bearer ")
        expiry = self.tokens.get(token) if auth.startswith("Bearer ") else None
        if expiry is None or self.clock() >= expiry:
            return SimResponse.json(
                jsonapi_error(401, "Unauthorized", "Unable to validate access token"), 401
            )
        if integration is not None and integration not in self.integrations:
            return SimResponse.json(
                jsonapi_error(404, "Not Found", "The resource could not be found"), 404
            )
        try:
            limit = int(request.arg("page[limit]", "25") or 25)
            offset = int(request.arg("page[offset]", "0") or 0)
        except ValueError:
            return SimResponse.json(
                jsonapi_error(400, "Bad Request", "Invalid page parameters"), 400
            )
        if not 0 < limit <= 100 or offset < 0:
            return SimResponse.json(
                jsonapi_error(400, "Bad Request", "page[limit] must be 1 to 100"), 400
            )
        rows = self.all_records(integration)
        served = 0 if self.ignore_offset else offset
        return SimResponse.json(
            {
                "data": rows[served : served + limit],
                "meta": {
                    "limit": limit,
                    "offset": offset,
                    "current": offset // limit + 1,
                    "total": -(-len(rows) // limit),  # the page count, as the vendor says
                },
                "results": {"total": len(rows)},
            }
        )

    def _token(self, request: SimRequest) -> SimResponse:
        if request.method != "POST":
            return SimResponse.json(jsonapi_error(405, "Method Not Allowed"), 405)
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return SimResponse.json(
                jsonapi_error(422, "Unprocessable Entity", "grant_type is required"), 422
            )
        given = (form.get("client_id"), form.get("client_secret"))
        if given != (self.client_id, self.client_secret):
            return SimResponse.json(
                jsonapi_error(401, "Unauthorized", "Invalid client credentials"), 401
            )
        token = uuid.uuid4().hex
        self.tokens[token] = self.clock() + self.expires_in
        return SimResponse.json(
            {
                "access_token": token,
                "expires": int(time.time()) + self.expires_in,
                "expires_in": self.expires_in,
                "identifier": "client_credentials",
                "token_type": "Bearer",
            }
        )

    def _throttled(self) -> bool:
        if self.rate_limit is None:
            return False
        second = int(self.clock())
        current, count = self._window
        count = count + 1 if second == current else 1
        self._window = (second, count)
        return count > self.rate_limit
