"""Pegasus Gateway changelogs (and, optionally, resource modifications) → logd entries.

Changelogs come newest first, paged by `limit`/`offset`, with no time filter. A walk pages
from the top until it reaches *ground*: a page holding a record that was stored before the
walk began, or one with a `system_time` older than the watermark minus `overlap`. Rows written
while we page push everything down, so a page may repeat the tail of the page before it: rows
already stored are not handed over again, and such a repeat never counts as ground.

Crash safety: every page is a batch. Until a walk reaches ground its batches carry the old
watermark and a resume point (the offset and `total` after the page, and the oldest and newest
`system_time` stored so far). The next poll first finishes that gap, finding its place again
by how much `total` grew and stepping back while the page starts below the resume point, and
only then walks the new top, which stops at the interrupted walk's first page.

Modifications are walked per configured item over the window `[watermark - overlap, now)`:
sections 1..N, each from pointer 0, following `next_pointer` until -1. An item's watermark
moves to the window's `to` only with the batch that ends the walk, so a walk cut off is simply
walked again in full next time: pointers are not assumed to stay valid between polls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from logd import (
    Auth,
    AuthError,
    Batch,
    BearerToken,
    Entry,
    HTTPStatusError,
    Invalid,
    LoginSession,
    PollContext,
    ProtocolError,
    Provider,
    Status,
    cap_watermark,
    map_records,
    native_id_of,
    parse_timestamp,
)

from .options import Modification, PegasusOptions

PAGE_SIZE = 100
LOGIN = "/login"
CHANGELOGS = "/changelogs"
MODIFICATIONS = "/changelogs/modifications"


class Pegasus(Provider[PegasusOptions]):
    """Pegasus Gateway changelogs and modifications."""

    name = "pegasus"
    Options = PegasusOptions
    description = "Pegasus Gateway changelogs (GET /changelogs, /changelogs/modifications)"

    def __init__(self) -> None:
        # The login session outlives a poll: the engine keeps this instance per source, and a
        # session lasts an hour idle, so most polls need no login at all (memory only).
        self.session = LoginSession(_login, header="Authenticate", prefix="")

    def poll(self, ctx: PollContext[PegasusOptions]) -> Iterator[Batch]:
        """Finish an interrupted changelog walk, walk the new top, then each modifications item."""
        token = ctx.options.token
        auth: Auth = (
            BearerToken(
                token.get_secret_value(),
                header="Authenticate",
                prefix="",
                refused="Pegasus refused the token",
            )
            if token is not None
            else self.session
        )
        auth.apply(ctx)
        session = _Session(ctx, auth)
        cursor = _Cursor.load(ctx.cursor)
        # Forget the windows of items no longer configured (an edited item is a new key).
        configured = {item.key for item in ctx.options.modifications}
        cursor.modifications = {k: v for k, v in cursor.modifications.items() if k in configured}
        if cursor.resume is not None:
            yield from _ChangelogWalk(ctx, session, cursor, cursor.resume).run()
        yield from _ChangelogWalk(ctx, session, cursor, None).run()
        for item in ctx.options.modifications:
            yield from _walk_modifications(ctx, session, cursor, item)


class _Session:
    """GETs of JSON objects with the source's credentials."""

    def __init__(self, ctx: PollContext[PegasusOptions], auth: Auth) -> None:
        self.client = ctx.client
        self.auth = auth

    def get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GET a JSON object; a refused configured token is an `AuthError`."""
        with self.auth.authenticated():
            body = self.client.get_json(path, params=params)
        if not isinstance(body, dict):
            raise ProtocolError(f"GET {path}: expected a JSON object, got {type(body).__name__}")
        return body


def _login(ctx: PollContext[PegasusOptions]) -> str:
    """POST the configured account to `/login`; its `auth` is the session token."""
    opts = ctx.options
    password = opts.password.get_secret_value() if opts.password else ""
    try:
        body = ctx.client.post_json(
            LOGIN, json={"username": opts.username, "password": password}, credentials=False
        )
    except HTTPStatusError as exc:
        if exc.status_code in (400, 401, 403):
            raise AuthError(
                f"Pegasus refused the login of {opts.username!r} "
                f"(HTTP {exc.status_code}): {exc.vendor_text}"
            ) from None
        raise
    token = body.get("auth") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"POST {LOGIN} answered without an `auth` token")
    return token


@dataclass
class _Cursor:
    """The source's cursor as plain JSON, so that every batch can carry a snapshot of it."""

    #: Newest `system_time` of the last walk that reached ground (or the end of the list).
    watermark: str | None = None
    #: Where an unfinished walk stands: offset, total, low, top.
    resume: dict[str, Any] | None = None
    #: Modifications item key → the `to` of its last completed window.
    modifications: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> _Cursor:
        """Read a stored cursor (None: the first poll)."""
        if not raw:
            return cls()
        changelogs = raw.get("changelogs") or {}
        return cls(
            watermark=changelogs.get("watermark"),
            resume=changelogs.get("resume"),
            modifications=dict(raw.get("modifications") or {}),
        )

    def dump(self) -> dict[str, Any]:
        """A snapshot for one batch."""
        return {
            "changelogs": {
                "watermark": self.watermark,
                "resume": dict(self.resume) if self.resume else None,
            },
            "modifications": dict(self.modifications),
        }


@dataclass
class _Page:
    entries: list[Entry]
    total: int
    #: Records of the page that could not be mapped; they count for the offset only.
    invalid: list[Invalid] = field(default_factory=list)
    #: Records listed on the page, readable or not: what the offset moves by.
    listed: int = 0


class _ChangelogWalk:
    """One newest-first walk of `/changelogs` down to ground, or the rest of an interrupted one."""

    def __init__(
        self,
        ctx: PollContext[PegasusOptions],
        session: _Session,
        cursor: _Cursor,
        resume: Mapping[str, Any] | None,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.cursor = cursor
        self.resume = resume
        opts = ctx.options
        self.params: dict[str, Any] = {"limit": PAGE_SIZE, "full": 1}
        if opts.methods:
            self.params["methods"] = ",".join(m.upper() for m in opts.methods)
        if opts.path:
            self.params["path"] = opts.path
        if opts.user_ids:
            self.params["user_ids"] = ",".join(str(u) for u in opts.user_ids)
        self.watermark = _time(cursor.watermark)
        overlap = timedelta(seconds=opts.overlap)
        self.floor = self.watermark - overlap if self.watermark else None

    def fetch(self, offset: int) -> _Page:
        """One page at `offset`; records that cannot be mapped are quarantined in `invalid`."""
        body = self.session.get(CHANGELOGS, {**self.params, "offset": offset})
        data, total = body.get("data"), body.get("total")
        if not isinstance(data, list) or type(total) is not int:
            raise ProtocolError("Pegasus changelogs answer without a `data` list and a `total`")
        entries, invalid = map_records(data, changelog_entry)
        return _Page(entries, total, invalid, len(data))

    def run(self) -> Iterator[Batch]:
        """Yield one batch per page; the last one moves the watermark and drops the resume point."""
        client = self.ctx.client
        before = client.requests
        low: datetime | None = None
        top: datetime | None = None
        if self.resume is None:
            offset, page = 0, self.fetch(0)
        else:
            low, top = _time(self.resume["low"]), _time(self.resume["top"])
            offset, page = self._relocate(
                int(self.resume["offset"]), int(self.resume["total"]), low
            )
        while True:
            ids = [e.native_id for e in page.entries]
            known = self.ctx.known_ids(ids) if ids else set()
            # A stored row older than all this walk has stored was there before the walk began;
            # a newer one is a row of this walk, pushed onto this page by rows written since.
            reached = any(
                e.native_id in known and (low is None or e.timestamp < low) for e in page.entries
            )
            # Stored rows (repeats included) are not handed over again: changelogs never change.
            unseen = {e.native_id: e for e in page.entries if e.native_id not in known}
            fresh = list(unseen.values())
            if self.floor is not None:
                reached = reached or any(e.timestamp < self.floor for e in page.entries)
            if fresh:
                oldest = min(e.timestamp for e in fresh)
                low = oldest if low is None else min(low, oldest)
                if self.resume is None:
                    # A resumed walk keeps its top: rows above the resume point belong to the
                    # walk of the new top that follows it.
                    newest = max(e.timestamp for e in fresh)
                    top = newest if top is None else max(top, newest)
            offset += page.listed
            done = reached or not page.listed or offset >= page.total
            if done:
                if top is not None:
                    # Never past our own clock: a vendor clock ahead would hide later rows.
                    top = cap_watermark(top, self.ctx.now())
                if top is not None and (self.watermark is None or top > self.watermark):
                    self.cursor.watermark = _iso(top)
                self.cursor.resume = None
            elif low is not None and top is not None:  # always so once a page had rows
                self.cursor.resume = {
                    "offset": offset,
                    "total": page.total,
                    "low": _iso(low),
                    "top": _iso(top),
                }
            yield Batch(
                fresh,
                cursor=self.cursor.dump(),
                requests=client.requests - before,
                more=not done,
                invalid=page.invalid,
            )
            if done:
                return
            before = client.requests
            page = self.fetch(offset)

    def _relocate(self, offset: int, total: int, low: datetime | None) -> tuple[int, _Page]:
        """Find where an interrupted walk stopped, after rows arrived above it (or left)."""
        # One row early: the oldest row stored comes back first when nothing moved.
        at = max(0, offset - 1)
        page = self.fetch(at)
        grown = page.total - total
        if grown:
            at = max(0, at + grown)
            page = self.fetch(at)
        # Late rows written below the resume point, or rows removed above it, put us past it:
        # step back until the page starts at or above the oldest row already stored.
        while at > 0 and (
            not page.listed or (low and page.entries and page.entries[0].timestamp < low)
        ):
            at = max(0, at - PAGE_SIZE)
            page = self.fetch(at)
        return at, page


def _walk_modifications(
    ctx: PollContext[PegasusOptions], session: _Session, cursor: _Cursor, item: Modification
) -> Iterator[Batch]:
    """Walk one item's window: sections 1..N, each from pointer 0 until `next_pointer` is -1."""
    opts = ctx.options
    to = ctx.now().astimezone(UTC).replace(microsecond=0)
    mark = _time(cursor.modifications.get(item.key))
    start = (
        mark - timedelta(seconds=opts.overlap)
        if mark
        else to - timedelta(seconds=opts.modifications_backfill)
    )
    window = {
        **item.params(),
        "from": _iso(start, "seconds"),
        "to": _iso(to, "seconds"),
        "limit": PAGE_SIZE,
    }
    before = ctx.client.requests
    section, sections = 1, 1
    while section <= sections:
        pointer = 0
        while True:
            body = session.get(MODIFICATIONS, {**window, "section": section, "pointer": pointer})
            data, next_pointer, sections = _modification_page(body)
            mapped, invalid = map_records(
                data, partial(modification_entry, item.resource), native_id=modification_id
            )
            page = {e.native_id: e for e in mapped}
            # The last item of a page comes back first on the next one, and the overlap of
            # windows brings back more: stored items are not handed over again.
            known = ctx.known_ids(list(page)) if page else set()
            entries = [e for native_id, e in page.items() if native_id not in known]
            if next_pointer == -1 and section >= sections:
                cursor.modifications[item.key] = _iso(to, "seconds")
            # An empty section is not an empty page: `more` speaks of this section's pointers.
            yield Batch(
                entries,
                cursor=cursor.dump(),
                requests=ctx.client.requests - before,
                more=next_pointer != -1,
                invalid=invalid,
            )
            before = ctx.client.requests
            if next_pointer == -1:
                break
            if next_pointer <= pointer:
                raise ProtocolError(
                    f"modifications of {item.resource}: next_pointer {next_pointer} does not "
                    f"move past pointer {pointer} (section {section})"
                )
            pointer = next_pointer
        section += 1


def _modification_page(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int, int]:
    data, next_pointer, sections = body.get("data"), body.get("next_pointer"), body.get("sections")
    if not isinstance(data, list) or type(next_pointer) is not int:
        raise ProtocolError("Pegasus modifications answer without `data` and `next_pointer`")
    return data, next_pointer, sections if type(sections) is int else 1


def changelog_entry(record: Mapping[str, Any]) -> Entry:
    """Map one changelog (`full=1`) to an entry: failure when `response.status_code >= 400`.

    Raises ProtocolError or ValueError naming the field when `id` or `system_time` is
    missing or unusable (`map_records` quarantines the record).
    """
    if not isinstance(record, Mapping):
        raise ProtocolError(f"Pegasus changelog is not an object but {type(record).__name__}")
    if "id" not in record or "system_time" not in record:
        missing = " and ".join(k for k in ("id", "system_time") if k not in record)
        raise ProtocolError(f"Pegasus changelog without {missing}")
    native_id = native_id_of(record["id"])
    timestamp = parse_timestamp(record["system_time"])
    response = record.get("response")
    response = response if isinstance(response, Mapping) else {}
    code = _status_code(response.get("status_code"))
    shown = response.get("status") or code
    head = f"{_scalar(record.get('method', '?'))} {_scalar(record.get('path', '?'))}"
    failed = code is not None and code >= 400
    return Entry(
        native_id=native_id,
        timestamp=timestamp,
        status=Status.FAILURE if failed else Status.SUCCESS,
        message=f"{head} -> {shown}" if shown else head,
        error=_response_error(response, shown) if failed else None,
        raw=record,
    )


def modification_id(record: Mapping[str, Any]) -> str:
    """A modification's native id, `"{$$id}:{$$object}"`; ValueError when either is unusable."""
    if not isinstance(record, Mapping):
        raise ProtocolError(f"Pegasus modification is not an object but {type(record).__name__}")
    missing = [k for k in ("$$id", "$$object") if k not in record]
    if missing:
        raise ProtocolError(f"Pegasus modification without {' and '.join(missing)}")
    return f"{native_id_of(record['$$id'], '$$id')}:{native_id_of(record['$$object'], '$$object')}"


def modification_entry(resource: str, record: Mapping[str, Any]) -> Entry:
    """Map one modification to a successful entry with native id `"{$$id}:{$$object}"`."""
    native_id = modification_id(record)
    if "$$system_time" not in record:
        raise ProtocolError("Pegasus modification without $$system_time")
    timestamp = parse_timestamp(record["$$system_time"])
    obj = native_id_of(record["$$object"])
    changed = ", ".join(f"{k}={v}" for k, v in record.items() if not str(k).startswith("$$"))
    return Entry(
        native_id=native_id,
        timestamp=timestamp,
        status=Status.SUCCESS,
        message=f"{resource} {obj}: {changed}" if changed else f"{resource} {obj} modified",
        entity_type=resource,
        entity_id=obj,
        raw=record,
    )


def _scalar(value: Any) -> str:
    """A method or path as text; objects and lists (a vendor's mistake) as `?`."""
    return "?" if isinstance(value, dict | list) else str(value)


def _status_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _response_error(response: Mapping[str, Any], shown: Any) -> str:
    """The vendor's words from a failed response body, else its status line."""
    data = response.get("data")
    if isinstance(data, Mapping):
        for key in ("message", "detail", "error", "errors"):
            value = data.get(key)
            if value:
                return str(value)
    return str(shown or "failed")


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _iso(when: datetime, timespec: str = "microseconds") -> str:
    return when.astimezone(UTC).isoformat(timespec=timespec)
