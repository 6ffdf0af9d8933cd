"""Akinon Integrator flow logs → logd entries.

Each poll walks `/logs` for every configured flow and log type, newest first (inferred), from
page 1 until a page reaches `overlap` before the newest `created` seen (the watermark) — or
further back, to the oldest log still unfinished last time, so that every unfinished log is
seen again until it finishes. Each page is one batch; only the batch that ends a walk moves
that walk's watermark, so a poll cut short walks the same range again.

A failed main log is followed up: its log file is downloaded (and, when configured, its line
logs fetched). A follow-up that fails is a batch warning and is kept in the cursor, with the
record, and tried again at the start of the next poll.

Cursor::

    {"flows": {flow_id: {"1": {"watermark": iso, "open": {native_id: created_iso}}}},
     "followups": {native_id: {"flow": id, "record": {...}, "need": ["download"], "tries": 1}}}
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from logd import (
    Auth,
    AuthError,
    Batch,
    Entry,
    Invalid,
    PollContext,
    Provider,
    SourceError,
    Status,
    cap_watermark,
    map_record,
    parse_timestamp,
)

from .api import download, line_logs, log_page
from .options import AkinonOptions
from .records import MAIN, DownloadError, is_finished, native_id, to_entry
from .session import Session, login_session, static_token

#: A follow-up (download, line logs) that failed this many polls in a row is given up.
MAX_TRIES = 10


@dataclass
class _State:
    """The cursor while a poll runs; `dump()` is what each batch commits."""

    flows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    followups: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: Any) -> _State:
        """A private copy of the stored cursor (empty on a first poll)."""
        cursor = copy.deepcopy(dict(cursor or {}))
        return cls(cursor.get("flows") or {}, cursor.get("followups") or {})

    def walk(self, flow: str, log_type: int) -> dict[str, Any]:
        """The mutable state of one flow and log type: `watermark` and `open`."""
        walk = self.flows.setdefault(flow, {}).setdefault(str(log_type), {})
        walk.setdefault("open", {})
        return walk

    def dump(self) -> dict[str, Any]:
        """A snapshot for a batch, so later changes cannot reach a cursor already yielded."""
        return copy.deepcopy({"flows": self.flows, "followups": self.followups})


class Akinon(Provider[AkinonOptions]):
    """Akinon Integrator flow logs."""

    name = "akinon"
    Options = AkinonOptions
    description = "Akinon Integrator flow logs (GET /logs, /logs/download)"

    def __init__(self) -> None:
        # The login session: the engine keeps this instance between polls of its source, so
        # an idle poll needs no login. Memory only, never the cursor.
        self.session = login_session()

    def poll(self, ctx: PollContext[AkinonOptions]) -> Iterator[Batch]:
        """Retry earlier follow-ups, then walk every flow and log type back to its bound."""
        opts = ctx.options
        auth: Auth = static_token(opts.token.get_secret_value()) if opts.token else self.session
        auth.apply(ctx)
        session = Session(ctx, auth)
        state = _State.load(ctx.cursor)
        # Flows taken out of the config leave nothing behind to re-check or retry.
        state.flows = {f: w for f, w in state.flows.items() if f in opts.flow_ids}
        state.followups = {
            n: j for n, j in state.followups.items() if j.get("flow") in opts.flow_ids
        }
        for nid in list(state.followups):
            yield self._retry_follow_up(ctx, session, state, nid)
        for flow in opts.flow_ids:
            for log_type in opts.log_types:
                yield from self._walk(ctx, session, state, flow, log_type)

    # -- walking /logs ----------------------------------------------------------------------

    def _walk(
        self,
        ctx: PollContext[AkinonOptions],
        session: Session,
        state: _State,
        flow: str,
        log_type: int,
    ) -> Iterator[Batch]:
        opts = ctx.options
        walk = state.walk(flow, log_type)
        warnings: list[str] = []
        too_old = ctx.now() - timedelta(seconds=opts.recheck_for)
        for nid, created in list(walk["open"].items()):
            if parse_timestamp(created) < too_old:
                del walk["open"][nid]
                warnings.append(f"log {nid} (flow {flow}) still unfinished; no longer re-checked")
        before_open = dict(walk["open"])
        watermark = parse_timestamp(walk["watermark"]) if walk.get("watermark") else None
        bound = None
        if watermark is not None:
            # Far enough back for the overlap and for every log unfinished last time.
            bound = min(
                [watermark - timedelta(seconds=opts.overlap)]
                + [parse_timestamp(c) for c in before_open.values()]
            )
        newest, previous = watermark, None
        ordered = True
        still_open: dict[str, str] = {}
        seen: set[str] = set()
        page = 1
        while True:
            spent = ctx.client.requests
            results, more = log_page(session, opts, flow, log_type, page)
            entries: list[Entry] = []
            invalid: list[Invalid] = []
            failed: list[tuple[Entry, dict[str, Any]]] = []
            for record in results:
                mapped = map_record(
                    record,
                    partial(to_entry, log_type=log_type, flow_id=flow, naive_tz=opts.tz),
                    native_id=partial(native_id, log_type=log_type),
                )
                if isinstance(mapped, Invalid):
                    # Quarantined: no part of the walk's bounds, watermark or open logs.
                    invalid.append(mapped)
                    continue
                entry = mapped
                if previous is not None and entry.timestamp > previous and ordered:
                    ordered = False  # the inferred order does not hold: walk to the end
                    warnings.append(f"flow {flow} log_type {log_type}: logs not newest first")
                previous = entry.timestamp
                newest = entry.timestamp if newest is None else max(newest, entry.timestamp)
                seen.add(entry.native_id)
                if is_finished(record) or entry.timestamp < too_old:
                    walk["open"].pop(entry.native_id, None)
                else:
                    still_open[entry.native_id] = walk["open"][entry.native_id] = (
                        entry.timestamp.isoformat()
                    )
                if log_type == MAIN and entry.status is Status.FAILURE and is_finished(record):
                    failed.append((entry, record))
                entries.append(entry)
            reached = bound is not None and ordered and any(e.timestamp < bound for e in entries)
            entries += self._new_failures(
                ctx, session, state, flow, failed, before_open, warnings, invalid
            )
            done = not more or reached
            if done:
                for nid in set(before_open) - seen:
                    warnings.append(f"log {nid} (flow {flow}) is no longer listed; forgotten")
                walk["open"] = still_open
                if newest is not None:
                    # Never past our own clock: a vendor clock ahead would hide later logs.
                    walk["watermark"] = cap_watermark(newest, ctx.now()).isoformat()
            yield Batch(
                entries,
                cursor=state.dump(),
                pages=1,
                requests=ctx.client.requests - spent,
                warnings=warnings,
                more=not done,
                invalid=invalid,
            )
            if done:
                return
            warnings = []
            page += 1

    # -- follow-ups of failed main logs -----------------------------------------------------

    def _needs(self, opts: AkinonOptions) -> list[str]:
        wanted = (("download", opts.download_failed), ("lines", opts.line_logs))
        return [name for name, on in wanted if on]

    def _new_failures(
        self,
        ctx: PollContext[AkinonOptions],
        session: Session,
        state: _State,
        flow: str,
        failed: list[tuple[Entry, dict[str, Any]]],
        before_open: dict[str, str],
        warnings: list[str],
        invalid: list[Invalid],
    ) -> list[Entry]:
        """Follow up failed main logs seen for the first time or just finished."""
        need = self._needs(ctx.options)
        if not need or not failed:
            return []
        known = ctx.known_ids([e.native_id for e, _ in failed])
        extra: list[Entry] = []
        for entry, record in failed:
            nid = entry.native_id
            if nid in state.followups or (nid in known and nid not in before_open):
                continue  # done before, or already retried at the start of this poll
            job = {"flow": flow, "record": record, "need": list(need), "tries": 0}
            extra += self._follow_up(ctx, session, state, entry, job, warnings, invalid)
        return extra

    def _retry_follow_up(
        self, ctx: PollContext[AkinonOptions], session: Session, state: _State, nid: str
    ) -> Batch:
        job = state.followups[nid]
        spent = ctx.client.requests
        invalid: list[Invalid] = []
        warnings: list[str] = []
        mapped = map_record(
            job.get("record"),
            partial(to_entry, log_type=MAIN, flow_id=str(job.get("flow")), naive_tz=ctx.options.tz),
        )
        if isinstance(mapped, Invalid):  # a cursor written by an older, laxer version
            state.followups.pop(nid, None)
            return Batch([], cursor=state.dump(), pages=0, invalid=[mapped])
        extra = self._follow_up(ctx, session, state, mapped, job, warnings, invalid)
        return Batch(
            [mapped, *extra],
            cursor=state.dump(),
            pages=0,
            requests=ctx.client.requests - spent,
            warnings=warnings,
            invalid=invalid,
        )

    def _follow_up(
        self,
        ctx: PollContext[AkinonOptions],
        session: Session,
        state: _State,
        entry: Entry,
        job: dict[str, Any],
        warnings: list[str],
        invalid: list[Invalid],
    ) -> list[Entry]:
        """Attach the download to `entry`, return its line logs; keep what failed for later.

        Line logs that cannot be mapped go to `invalid` (quarantined), not into a retry.
        """
        opts, flow, record = ctx.options, job["flow"], job["record"]
        nid, extra, left = entry.native_id, [], []
        for need in job["need"]:
            try:
                if need == "download":
                    entry.details = download(session, opts, flow, record)
                else:
                    lines, bad = line_logs(session, opts, flow, record, nid)
                    extra += lines
                    invalid += bad
            except AuthError:
                raise
            except (DownloadError, SourceError) as exc:
                what = "download" if need == "download" else "line logs"
                warnings.append(f"log {nid} (flow {flow}): {what} failed: {exc}")
                left.append(need)
        job = {**job, "need": left, "tries": job["tries"] + 1}
        if not left:
            state.followups.pop(nid, None)
        elif job["tries"] >= MAX_TRIES:
            state.followups.pop(nid, None)
            warnings.append(f"log {nid} (flow {flow}): giving up after {MAX_TRIES} polls")
        else:
            state.followups[nid] = job
            warnings.append(f"log {nid} (flow {flow}): will retry {', '.join(left)} next poll")
        return extra
