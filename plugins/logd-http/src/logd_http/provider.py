"""The `http` provider: walks an API's pages as its `[[sources]]` description says.

Each poll asks from the cursor (the newest timestamp seen minus `lookback`, or the largest
id seen) and walks pages until the paging style says there are no more, or, for an API that
lists newest first, until a page holds a stored id. The cursor moves when the walk is
complete; for an API that lists oldest first, with every page. A walk cut short (a crash,
an error) is marked in the cursor so that the next one does not stop at the stored ids the
cut walk left behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from logd.errors import ProtocolError
from logd.plugin.entries import Batch, Entry, map_records, parse_timestamp
from logd.plugin.provider import PollContext, Provider

from .auth import (
    Credentials,
    Token,
    TokenSession,
    basic_header,
    bearer_header,
    client_credentials,
    fill,
    login_call,
)
from .options import AuthOptions, HTTPOptions, IncrementalOptions, LoginAuth, compiled, zone
from .paging import PageRequest, Progress, first_request, next_request, total_of
from .records import MappingError, RecordMapper


class HTTPProvider(Provider[HTTPOptions]):
    """Any JSON integration-log API described in TOML."""

    name = "http"
    Options = HTTPOptions
    description = "any JSON log API described in TOML (request, auth, records, status, paging)"

    def __init__(self) -> None:
        # Session tokens live here between polls (in memory only, never in the cursor).
        self._credentials: Credentials | None = None

    def secrets(self, options: HTTPOptions) -> list[str]:
        """Every secret of the description, nested tables included."""
        found: list[str] = []
        _collect_secrets(options, found)
        return [v for v in found if v]

    def poll(self, ctx: PollContext[HTTPOptions]) -> Iterator[Batch]:
        """Walk the pages from the cursor; see the module docstring for when it moves."""
        opts = ctx.options
        if self._credentials is None:
            self._credentials = credentials_for(opts.auth)
        credentials = self._credentials
        credentials.start(ctx)
        mapper = RecordMapper(opts.records, opts.status)
        inc = opts.incremental
        old = dict(ctx.cursor or {})
        params: dict[str, Any] = dict(opts.request.params)
        if inc.param:
            since = _since(old, inc)
            if since is not None:
                params[inc.param] = since
        request: PageRequest | None = first_request(opts.paging, opts.request.path, params)
        # A walk cut short left stored ids behind it: do not stop at them this time.
        stop_at_known = inc.order == "newest_first" and not old.get("incomplete")
        cursor = {k: v for k, v in old.items() if k != "incomplete"}
        progress = Progress()
        first_total: int | None = None
        first = True
        while request is not None:
            url = ctx.client.url(request.target)
            progress.asking(request, url)
            credentials.before_request(ctx)
            before = ctx.client.requests
            response = self._send(ctx, credentials, request, url)
            body = ctx.client.json(response)
            where = f"{opts.request.method} {url}"
            try:
                records = mapper.records(body)
            except MappingError as exc:
                raise ProtocolError(f"{where}: {exc}") from None
            progress.answered(records, url)
            # A record that cannot be mapped is quarantined with its reason, not fatal.
            entries, invalid = map_records(
                records, partial(mapper.entry, seen_at=ctx.now()), native_id=mapper.native_id
            )
            total = total_of(opts.paging, body)
            cost = ctx.client.requests - before
            ids = [e.native_id for e in entries]
            if first:
                first_total, first = total, False
                if (
                    inc.skip_unchanged
                    and not old.get("incomplete")  # a cut walk left records unread
                    and total is not None
                    and total == old.get("total")
                    and set(ids) <= ctx.known_ids(ids)
                ):
                    # Nothing new: the total is the last walk's and the first page is stored.
                    yield Batch(
                        entries,
                        cursor=dict(old),
                        requests=cost,
                        total=total,
                        more=False,
                        invalid=invalid,
                    )
                    return
            _advance(cursor, entries, inc)
            request = next_request(opts.paging, ctx.client, request, response, body, records)
            if request is not None and stop_at_known and ids and ctx.known_ids(ids):
                request = None  # newest first: everything past a stored record is stored
            if request is None:
                if inc.skip_unchanged and first_total is not None:
                    cursor["total"] = first_total
                yield Batch(
                    entries,
                    cursor=dict(cursor),
                    requests=cost,
                    total=total,
                    more=False,
                    invalid=invalid,
                )
                return
            # Oldest first, every record up to here is in and the cursor may move; else
            # the walk is marked as under way, from where it started.
            interim = dict(cursor) if inc.order == "oldest_first" else {**old, "incomplete": True}
            # `more`: the engine's paging guard stops a run of empty pages that promise more.
            yield Batch(
                entries, cursor=interim, requests=cost, total=total, more=True, invalid=invalid
            )

    def _send(
        self, ctx: PollContext[HTTPOptions], credentials: Credentials, page: PageRequest, url: str
    ) -> httpx.Response:
        """One page request: paging parameters in the query or the body, as configured."""
        req = ctx.options.request
        query: dict[str, Any] = {}
        body: Any = None
        if req.method == "POST":
            body = copy.deepcopy(req.body) if req.body is not None else {}
        if req.params_in == "body":
            for name, value in page.params.items():
                _put(body, name, value)
        else:
            query.update(page.params)
        # Query credentials are added per request, and only for base_url's origin (a
        # redirect elsewhere goes to its Location alone: the client drops `params`).
        query.update(credentials.query_for(ctx, url))
        return ctx.client.request(
            req.method, url, params=query or None, json=body, headers=req.headers or None
        )


def credentials_for(auth: AuthOptions | None) -> Credentials:
    """The credentials an `[sources.auth]` table describes (none when it is absent)."""
    if auth is None:
        return Credentials({})
    if auth.bearer is not None:
        value = bearer_header(auth.bearer.token.get_secret_value(), auth.bearer.scheme)
        return Credentials({auth.bearer.header: value})
    if auth.basic is not None:
        password = auth.basic.password.get_secret_value()
        return Credentials({"Authorization": basic_header(auth.basic.username, password)})
    if auth.api_key is not None:
        key = {auth.api_key.name: auth.api_key.value.get_secret_value()}
        return Credentials({}, key) if auth.api_key.location == "query" else Credentials(key)
    if auth.oauth2 is not None:
        oauth = auth.oauth2
        fetch = client_credentials(
            oauth.token_url,
            oauth.client_id.get_secret_value(),
            oauth.client_secret.get_secret_value(),
            scope=oauth.scope,
            basic=oauth.client_auth == "basic",
            refresh_margin=oauth.refresh_margin,
        )
        return TokenSession(fetch)
    if auth.login is not None:
        return TokenSession(_login(auth.login), header=auth.login.header, scheme=auth.login.scheme)
    raise AssertionError("validated: one auth table is set")


def _login(login: LoginAuth) -> Callable[[PollContext[Any]], Token]:
    """The login call a `[sources.auth.login]` table describes."""
    username = login.username or ""
    password = login.password.get_secret_value() if login.password else ""
    body = fill(login.body, {"username": username, "password": password})
    path = login.token
    return login_call(
        login.path,
        method=login.method,
        json=None if login.form or login.method == "GET" else body,
        form=body if login.form and login.method != "GET" else None,
        headers={"Authorization": basic_header(username, password)} if login.basic else None,
        token=None if path is None else lambda answer: compiled(path).search(answer),
        where="in its body" if path is None else f"at `{path}`",
    )


def _since(cursor: dict[str, Any], inc: IncrementalOptions) -> Any:
    """The incremental parameter's value from the cursor, or None on the first poll."""
    if inc.value == "id":
        return cursor.get("max_id")
    watermark = cursor.get("watermark")
    if not isinstance(watermark, str):
        return None
    start = parse_timestamp(watermark) - timedelta(seconds=inc.lookback)
    if inc.timezone:
        start = start.astimezone(zone(inc.timezone))
    if inc.format == "date":
        return start.date().isoformat()
    if inc.format == "epoch_s":
        return int(start.timestamp())
    if inc.format == "epoch_ms":
        return int(start.timestamp() * 1000)
    return start.isoformat()


def _advance(cursor: dict[str, Any], entries: list[Entry], inc: IncrementalOptions) -> None:
    """Move the cursor past these entries: newest timestamp (as sent) or largest id."""
    if inc.value == "id":
        best = cursor.get("max_id")
        for entry in entries:
            value: Any = entry.native_id
            if value.isdigit():
                value = int(value)
            if best is None or _id_key(value) > _id_key(best):
                best = value
        if best is not None:
            cursor["max_id"] = best
        return
    mark = cursor.get("watermark")
    newest = parse_timestamp(mark) if isinstance(mark, str) else None
    for entry in entries:
        if entry.timestamp_observed:
            continue  # logd's clock, not the API's: no filter may start from it
        if newest is None or entry.timestamp > newest:
            newest = entry.timestamp
            mark = entry.timestamp.isoformat()
    if mark is not None:
        cursor["watermark"] = mark


def _id_key(value: Any) -> tuple[int, Any]:
    """Numbers before strings, each in their own order."""
    return (0, value) if isinstance(value, int) else (1, str(value))


def _put(body: dict[str, Any], name: str, value: Any) -> None:
    """Set `a.b.c` in a JSON body, making the tables on the way."""
    *parents, leaf = name.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[leaf] = value


def _collect_secrets(value: Any, found: list[str]) -> None:
    if isinstance(value, SecretStr):
        found.append(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
