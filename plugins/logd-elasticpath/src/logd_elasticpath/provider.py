"""Elastic Path Commerce Cloud integration logs → logd entries.

The API neither filters by time nor documents its order, and most records carry no time at
all. So each scope (the whole store, or one configured integration) is walked page by page
until `offset >= results.total`, and the store drops what it already has. An idle scope costs
one request: when `results.total` equals the total of the last completed walk and the first
page holds only stored ids, the rest of the walk is skipped.

Access tokens come from the OAuth client-credentials grant and live in memory only (the
cursor sits in plain SQLite), shared across polls until shortly before they expire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from logd.errors import AuthError, HTTPStatusError, ProtocolError, SourceError
from logd.plugin.auth import LoginSession, Token
from logd.plugin.entries import Batch, Entry, Status, map_records, parse_timestamp
from logd.plugin.provider import PollContext, Provider

from .options import ElasticPathOptions

PAGE_SIZE = 100
TOKEN_PATH = "/oauth/access_token"
STORE_PATH = "/v2/integrations/logs"
#: Cursor key of the store-wide scope; integration scopes are keyed by their uuid.
STORE_SCOPE = "store"


def _fetch_token(ctx: PollContext[ElasticPathOptions]) -> Token:
    """An access token from the OAuth client-credentials grant, with its `expires_in`."""
    opts = ctx.options
    form = {
        "grant_type": "client_credentials",
        "client_id": opts.client_id.get_secret_value(),
        "client_secret": opts.client_secret.get_secret_value(),
    }
    try:
        # The form is the credential: no stale Bearer header rides along.
        response = ctx.client.request("POST", TOKEN_PATH, data=form, credentials=False)
    except HTTPStatusError as exc:
        if exc.status_code in (400, 401, 403):
            raise AuthError(
                f"Elastic Path refused the client credentials: {exc.vendor_text} "
                f"(HTTP {exc.status_code} from {exc.url})",
                hint="check client_id and client_secret",
            ) from None
        raise
    body = ctx.client.json(response)
    value = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{TOKEN_PATH} answer has no `access_token`")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        raise ProtocolError(f"{TOKEN_PATH} answer has no numeric `expires_in`")
    token_type = body.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise ProtocolError(f"{TOKEN_PATH} issued a {token_type!r} token, not a Bearer one")
    return Token(value, expires_in=float(expires_in))


@dataclass(frozen=True)
class _Scope:
    key: str
    path: str
    integration: str | None


class ElasticPath(Provider[ElasticPathOptions]):
    """Elastic Path Commerce Cloud integration logs."""

    name = "elasticpath"
    Options = ElasticPathOptions
    description = "Elastic Path integration logs (GET /v2/integrations/logs)"
    # The vendor answers 429 above 25 to 100 requests a second per store, by plan.
    max_rate = "20/s"

    def __init__(self) -> None:
        # The engine keeps one instance per source while its options are unchanged, so the
        # token outlives the poll (in memory only) and a rotated secret gets a fresh instance.
        self.session = LoginSession(
            _fetch_token,
            refused_again="Elastic Path refused a freshly issued access token",
            hint="check that the client credentials may read integration logs",
        )

    def poll(self, ctx: PollContext[ElasticPathOptions]) -> Iterator[Batch]:
        """Walk each scope's pages, or one page when the scope looks idle."""
        session = self.session
        session.refresh_margin = ctx.options.token_refresh_margin
        session.apply(ctx)
        scopes = _scopes(ctx.options)
        old = (ctx.cursor or {}).get("totals")
        old_totals = old if isinstance(old, dict) else {}
        # Forget scopes no longer configured; keep the others' totals until re-walked.
        totals: dict[str, int] = {
            s.key: int(old_totals[s.key]) for s in scopes if isinstance(old_totals.get(s.key), int)
        }
        problems: list[HTTPStatusError] = []
        for scope in scopes:
            try:
                yield from self._walk(ctx, session, scope, totals)
            except HTTPStatusError as exc:
                if scope.integration is None:
                    raise
                # One broken integration must not starve the others of their polls.
                problems.append(_integration_error(scope.integration, exc))
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise SourceError("; ".join(str(p) for p in problems))

    def _walk(
        self,
        ctx: PollContext[ElasticPathOptions],
        session: LoginSession,
        scope: _Scope,
        totals: dict[str, int],
    ) -> Iterator[Batch]:
        previous = totals.get(scope.key)
        offset = 0
        first_total: int | None = None
        while True:
            before = ctx.client.requests
            with session.authenticated():
                body = ctx.client.get_json(
                    scope.path, params={"page[limit]": PAGE_SIZE, "page[offset]": offset}
                )
            records, total = _page(body)
            seen_at = ctx.now()
            entries, invalid = map_records(records, partial(to_entry, seen_at=seen_at))
            cost = ctx.client.requests - before
            if first_total is None:
                first_total = total
                ids = [e.native_id for e in entries]
                if total == previous and set(ids) <= ctx.known_ids(ids):
                    ctx.log.debug("%s: total still %d, first page all known", scope.key, total)
                    yield Batch(entries, cursor=_cursor(totals), requests=cost, invalid=invalid)
                    return
            offset += len(records)
            if not records or offset >= total:
                # The walk is complete: only now may the scope's total move. The first page's
                # total is kept, so records added during the walk force a re-walk next time.
                totals[scope.key] = first_total
                yield Batch(
                    entries, cursor=_cursor(totals), requests=cost, more=False, invalid=invalid
                )
                return
            yield Batch(entries, cursor=_cursor(totals), requests=cost, more=True, invalid=invalid)


def _scopes(opts: ElasticPathOptions) -> list[_Scope]:
    if not opts.integrations:
        return [_Scope(STORE_SCOPE, STORE_PATH, None)]
    uuids = dict.fromkeys(str(u) for u in opts.integrations)
    return [_Scope(u, f"/v2/integrations/{u}/logs", u) for u in uuids]


def _cursor(totals: Mapping[str, int]) -> dict[str, Any]:
    # A copy: the engine commits this mapping later, after `totals` may have moved on.
    return {"totals": dict(totals)}


def _integration_error(uuid: str, exc: HTTPStatusError) -> HTTPStatusError:
    if exc.status_code == 404:
        message = (
            f"integration {uuid} not found: {exc.vendor_text} (HTTP 404 from {exc.url}; "
            "check `integrations`)"
        )
    else:
        message = f"integration {uuid}: {exc}"
    return HTTPStatusError(
        message, status_code=exc.status_code, url=exc.url, vendor_text=exc.vendor_text
    )


def _page(body: Any) -> tuple[list[Any], int]:
    """The page's records (each one mapped, or quarantined, on its own) and `results.total`."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProtocolError("Elastic Path answer has no `data` list")
    results = body.get("results")
    total = results.get("total") if isinstance(results, dict) else None
    if not isinstance(total, int) or isinstance(total, bool):
        raise ProtocolError("Elastic Path answer has no integer `results.total`")
    records: list[Any] = body["data"]
    return records, total


def is_failure(record: Mapping[str, Any]) -> bool:
    """`succeeded` false, a `status_code` outside 2xx, or a non-empty `error_detail`."""
    if record.get("succeeded") is False or record.get("error_detail"):
        return True
    code = record.get("status_code")
    if code is None or code == "":
        return False
    try:
        return not 200 <= int(code) <= 299
    except (TypeError, ValueError):
        return True  # a status we cannot read is not evidence of success


def to_entry(record: Mapping[str, Any], seen_at: datetime) -> Entry:
    """Map one integration-log record; records without `created_at` take `seen_at`.

    Raises ProtocolError or ValueError naming the field for a record that is not an object,
    has no string `id`, or an unreadable `created_at` (`map_records` quarantines it).
    """
    if not isinstance(record, Mapping):
        raise ProtocolError(f"Elastic Path log record is not an object but {type(record).__name__}")
    native_id = record.get("id")
    if not isinstance(native_id, str) or not native_id.strip():
        raise ProtocolError(f"Elastic Path log record without a string `id` ({native_id!r:.60})")
    created = _created_at(record)
    try:
        timestamp = parse_timestamp(created) if created else seen_at
    except ValueError as exc:
        raise ProtocolError(f"unreadable created_at: {exc}") from None
    failed = is_failure(record)
    detail = record.get("error_detail")
    body = record.get("body")
    message = _words(detail or body or "")
    if failed and not message and record.get("status_code") is not None:
        message = f"HTTP {record.get('status_code')}"
    return Entry(
        native_id=native_id,
        timestamp=timestamp,
        timestamp_observed=not created,
        status=Status.FAILURE if failed else Status.SUCCESS,
        message=message,
        error=(message or "failed") if failed else None,
        entity_type="integration" if _integration_id(record) else None,
        entity_id=_integration_id(record),
        raw=dict(record),
    )


def _words(value: Any) -> str:
    """A vendor's text as text: objects and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _created_at(record: Mapping[str, Any]) -> str | None:
    meta = record.get("meta")
    timestamps = meta.get("timestamps") if isinstance(meta, dict) else None
    created = timestamps.get("created_at") if isinstance(timestamps, dict) else None
    return created if isinstance(created, str) and created else None


def _integration_id(record: Mapping[str, Any]) -> str | None:
    rel = record.get("relationships")
    integration = rel.get("integration") if isinstance(rel, dict) else None
    data = integration.get("data") if isinstance(integration, dict) else None
    value = data.get("id") if isinstance(data, dict) else None
    return str(value) if value else None
