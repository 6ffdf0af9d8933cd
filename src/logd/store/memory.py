"""A store in memory: the whole `logd.store.interface.Store` in plain Python (dicts, one lock).

The reference implementation of the interface: what each method means, without SQL. The
engine and delivery tests run against it as well as against SQLite, which shows the seam is
real; a plugin's tests can use it where a file is not the point. Nothing is kept after
`close`, and it serves one process (its leases and claims fence threads, not daemons).

    store = MemoryStore()
    store.commit_batch("fleet", entries, cursor, hooks=[outbox_hook])
    store.search(Filters(text="timeout"))

Search follows the SQLite backend's rules closely enough for tests: the text of `message`,
`error` and the searchable values of `raw` and `details` (`searchable_text`) is folded
(`query_language.fold`) and cut into words at anything that is not a letter or a digit, as
SQLite FTS5's `unicode61` tokenizer does; a phrase is consecutive words within one column.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from logd.errors import QueryError, StoreError
from logd.plugin.entries import Entry, Status
from logd.store.interface import (
    Attempt,
    BatchHook,
    BatchResult,
    Delivery,
    DeliveryState,
    Filters,
    Lease,
    LeaseLost,
    NewDelivery,
    RetentionResult,
    Row,
    RunProgress,
)
from logd.store.query_language import And, Column, Node, Not, Or, Term, fold, parse
from logd.store.text import searchable_text

if TYPE_CHECKING:
    from logd.store.interface import Store

__all__ = ["MemoryStore"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLOTS = 1000  # entries sharing one microsecond, as the SQLite store keys them
STATES = ("pending", "dead", "done")
#: A word as FTS5's unicode61 tokenizer sees one: letters, digits, private-use characters.
_WORD = re.compile(r"[^\W_]+|[\ue000-\uf8ff]+")
_TEXT_COLUMNS = ("message", "error", "search_text")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.astimezone(UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


def _tokens(text: str | None) -> list[str]:
    return _WORD.findall(fold(text).lower()) if text else []


@dataclass
class _Stored:
    """One entry as kept: its row, what tells a changed re-fetch, its words per column."""

    key: int
    row: Row
    hash: tuple[Any, ...]
    details_hash: str | None
    first_seen: str
    updated_at: str
    seq: int
    words: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Run:
    source: str
    started: str
    pid: int
    finished: str | None = None
    error: str | None = None
    requests: int = 0
    pages: int = 0
    new: int = 0
    updated: int = 0
    failures: int = 0
    waiting: str | None = None
    waiting_until: str | None = None


@dataclass
class _Outbox:
    order: int
    delivery: Delivery
    holder: str | None = None
    claimed_until: datetime | None = None


@dataclass
class _State:
    """Everything a batch may change, copied for the batch and swapped in at its commit."""

    entries: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    keys: dict[int, tuple[str, str]] = field(default_factory=dict)
    cursors: dict[str, tuple[Any, str]] = field(default_factory=dict)
    outbox: dict[str, _Outbox] = field(default_factory=dict)
    status_changes: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    runs: dict[int, _Run] = field(default_factory=dict)
    seq: int = 0
    order: int = 0


def _copy(state: _State) -> _State:
    """A copy a batch can change: containers copied, the values in them replaced, not mutated
    (an `_Outbox` of a delivery claimed meanwhile is the one thing written in place)."""
    return _State(
        dict(state.entries),
        dict(state.keys),
        dict(state.cursors),
        dict(state.outbox),
        list(state.status_changes),
        {k: copy.copy(v) for k, v in state.runs.items()},
        state.seq,
        state.order,
    )


class _Transaction:
    """`BatchTransaction` over a batch's staged state."""

    def __init__(self, store: MemoryStore, state: _State, source: str, provider: str) -> None:
        self._store, self._state = store, state
        self._source, self._provider = source, provider

    @property
    def source(self) -> str:
        return self._source

    @property
    def provider(self) -> str:
        return self._provider

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        found = (self._state.entries.get((self._source, n)) for n in native_ids)
        return {s.key: s.row for s in found if s is not None}

    def matching(self, expression: Node, keys: Sequence[int]) -> set[int]:
        out = set()
        for key in keys:
            ident = self._state.keys.get(key)
            if ident is not None and _matches(expression, self._state.entries[ident].words):
                out.add(key)
        return out

    def enqueue(self, delivery: NewDelivery, now: datetime) -> None:
        self._state.order += 1
        stamp = _iso(now)
        self._state.outbox[delivery.delivery_id] = _Outbox(
            self._state.order,
            Delivery(
                delivery.delivery_id,
                delivery.sink,
                delivery.source,
                delivery.provider,
                delivery.count,
                delivery.body,
                "pending",
                0,
                stamp,
                None,
                None,
                stamp,
                stamp,
            ),
        )


def _matches(node: Node, words: dict[str, list[str]], columns: Sequence[str] = ()) -> bool:
    """Whether an entry's words (per column) match a parsed search expression."""
    if isinstance(node, Term):
        phrase = _tokens(node.text)
        if not phrase:
            return True
        for column in columns or _TEXT_COLUMNS:
            have = words.get(column, [])
            n = len(phrase)
            for i in range(len(have) - n + 1):
                last = have[i + n - 1]
                if have[i : i + n - 1] == phrase[:-1] and (
                    last.startswith(phrase[-1]) if node.prefix else last == phrase[-1]
                ):
                    return True
        return False
    if isinstance(node, Column):
        return _matches(node.expr, words, (node.name,))
    if isinstance(node, And):
        return all(_matches(p, words, columns) for p in node.parts)
    if isinstance(node, Or):
        return any(_matches(p, words, columns) for p in node.parts)
    if isinstance(node, Not):
        return _matches(node.keep, words, columns) and not any(
            _matches(p, words, columns) for p in node.drop
        )
    raise TypeError(f"not a search expression: {node!r}")


class MemoryStore:
    """`logd.store.interface.Store` in memory. `clock` is when leases and runs happen."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.location = ":memory:"
        self.clock = clock
        self._lock = threading.RLock()
        self._state = _State()
        self._schedule: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, Lease] = {}
        self._lease_tokens: dict[str, int] = {}
        self._positions: dict[str, int] = {}
        self._run_ids = 0
        self._closed = False

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget everything; the store is unusable afterwards."""
        with self._lock:
            self._closed = True

    def _open(self) -> None:
        if self._closed:
            raise StoreError("the in-memory store was closed")

    # -- writing a source's entries ------------------------------------------------------

    def prepare(self, entry: Entry, provider: str) -> object:
        """Nothing to do ahead: the batch does it all."""
        return None

    def commit_batch(
        self,
        source: str,
        entries: Sequence[Entry],
        cursor: Any,
        *,
        provider: str,
        hooks: Sequence[BatchHook] = (),
        prepared: Sequence[object] | None = None,
        backfill: bool = False,
        run: RunProgress | None = None,
        lease: Lease | None = None,
    ) -> BatchResult:
        """Store entries, cursor, run counters and the hooks' work all at once, or nothing."""
        result = BatchResult(backfill=backfill)
        batch: dict[str, Entry] = {}
        for entry in entries:  # the later copy wins, unless it is a quarantined one
            if entry.status is Status.INVALID and entry.native_id in batch:
                continue
            batch[entry.native_id] = entry
        with self._lock:
            self._open()
            if lease is not None:
                self._check_lease(lease)
            state = _copy(self._state)
            now = _iso(self.clock())
            for entry in batch.values():
                self._write(state, source, provider, entry, now, result)
            if cursor is not None:
                state.cursors[source] = (copy.deepcopy(cursor), now)
            if run is not None and run.run_id in state.runs:
                counted = state.runs[run.run_id]
                counted.pages += run.pages
                counted.new += result.new
                counted.updated += result.updated
                counted.failures += len(result.new_failures)
            tx = _Transaction(self, state, source, provider)
            for hook in hooks:
                hook(tx, result)
            self._state = state  # the commit: nothing of it was seen before
        return result

    def _write(
        self,
        state: _State,
        source: str,
        provider: str,
        entry: Entry,
        now: str,
        result: BatchResult,
    ) -> None:
        ident = (source, entry.native_id)
        old = state.entries.get(ident)
        if old is not None and entry.status is Status.INVALID and old.row.status != "invalid":
            result.unchanged += 1  # never replaced by an unreadable copy of itself
            return
        when = entry.timestamp
        if old is not None and entry.timestamp_observed:
            when = datetime.fromisoformat(old.row.timestamp)  # the first sighting stands
        details = copy.deepcopy(entry.details)
        details_hash = None if details is None else repr(details)
        if old is not None and details is None:
            details, details_hash = old.row.details, old.details_hash  # no new download
        row = Row(
            id=f"{source}:{entry.native_id}",
            source=source,
            provider=provider,
            native_id=entry.native_id,
            timestamp=_iso(when),
            status=str(entry.status),
            message=entry.message,
            error=entry.error,
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            raw=copy.deepcopy(entry.raw),
            details=details,
            timestamp_observed=entry.timestamp_observed,
        )
        digest = (
            row.provider,
            row.timestamp,
            row.status,
            row.message,
            row.error,
            row.entity_type,
            row.entity_id,
            repr(row.raw),
        )
        if old is not None and old.hash == digest and old.details_hash == details_hash:
            result.unchanged += 1
            return
        if old is None:
            if entry.status is Status.INVALID:
                result.invalid.append(entry)
            else:
                result.new += 1
                if entry.status is Status.FAILURE:
                    result.new_failures.append(entry)
        else:
            result.updated += 1
            if old.row.status != row.status:
                state.status_changes.append(
                    (row.source, row.native_id, old.row.status, row.status, now)
                )
                if entry.status is Status.FAILURE:
                    result.new_failures.append(entry)
        key = old.key if old is not None and old.row.timestamp == row.timestamp else None
        if key is None:
            if old is not None:
                del state.keys[old.key]
            key = _micros(when) * SLOTS
            while key in state.keys:  # a microsecond's slots, then the next ones, as SQLite
                key += 1
        known = (row.message, row.error)
        text = searchable_text(row.raw if details is None else [row.raw, details], known=known)
        state.seq += 1
        stored = _Stored(
            key,
            row,
            digest,
            details_hash,
            old.first_seen if old is not None else now,
            now,
            state.seq,
            {
                "message": _tokens(row.message),
                "error": _tokens(row.error),
                "search_text": _tokens(text),
            },
        )
        state.entries[ident] = stored
        state.keys[key] = ident

    def cursor(self, source: str) -> Any:
        """A source's stored cursor, or None."""
        with self._lock:
            self._open()
            found = self._state.cursors.get(source)
        return copy.deepcopy(found[0]) if found else None

    def known_ids(self, source: str, native_ids: Sequence[str]) -> set[str]:
        """Which of `native_ids` are stored for `source` (quarantined records do not count)."""
        with self._lock:
            self._open()
            entries = self._state.entries
            return {
                n
                for n in native_ids
                if (s := entries.get((source, n))) is not None and s.row.status != "invalid"
            }

    # -- poll runs ---------------------------------------------------------------------------

    def start_run(self, source: str) -> int:
        """Record the start of a poll by this process; returns its run id."""
        with self._lock:
            self._open()
            self._run_ids += 1
            self._state.runs[self._run_ids] = _Run(source, _iso(self.clock()), os.getpid())
            return self._run_ids

    def finish_run(
        self, run_id: int, *, requests: int | None = None, error: str | None = None
    ) -> None:
        """Record the end of a poll, with its error if it failed."""
        with self._lock:
            self._open()
            run = self._state.runs.get(run_id)
            if run is not None:
                run.finished, run.error = _iso(self.clock()), error
                run.requests = run.requests if requests is None else requests
                run.waiting = run.waiting_until = None

    def note_waiting(
        self, run_id: int, waiting: str, until: datetime, *, timeout: float = 0.5
    ) -> bool:
        """Note what a running poll waits on; False when the store was busy for `timeout`."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            run = self._state.runs.get(run_id)
            if run is not None and run.finished is None:
                run.waiting = waiting
                run.waiting_until = until.astimezone(UTC).isoformat(timespec="seconds")
            return True
        finally:
            self._lock.release()

    def _latest_runs(self) -> dict[str, _Run]:
        latest: dict[str, _Run] = {}
        for run in self._state.runs.values():  # in id order
            latest[run.source] = run
        return latest

    def unfinished_runs(self) -> dict[str, tuple[str, int | None]]:
        """Per source whose latest poll run has no end: (started, pid of its process)."""
        with self._lock:
            self._open()
            return {
                s: (r.started, r.pid) for s, r in self._latest_runs().items() if r.finished is None
            }

    def run_waits(self) -> dict[str, tuple[str, str]]:
        """Per source whose running poll noted a wait: (what it waits on, until UTC ISO)."""
        with self._lock:
            self._open()
            return {
                s: (r.waiting, r.waiting_until)
                for s, r in self._latest_runs().items()
                if r.finished is None and r.waiting is not None and r.waiting_until is not None
            }

    # -- reading -----------------------------------------------------------------------------

    def get(self, entry_id: str) -> Row | None:
        """One entry by its id `source:native_id`, or None."""
        source, sep, native_id = entry_id.partition(":")
        if not sep:
            raise QueryError(f"entry id {entry_id!r} should look like SOURCE:NATIVE_ID")
        with self._lock:
            self._open()
            found = self._state.entries.get((source, native_id))
        return copy.deepcopy(found.row) if found else None

    def ids_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Entry ids starting with `prefix`, by source then native id."""
        with self._lock:
            self._open()
            idents = sorted(self._state.entries)
        return [f"{s}:{n}" for s, n in idents if f"{s}:{n}".startswith(prefix)][:limit]

    def _select(self, state: _State, f: Filters) -> list[_Stored]:
        """The stored entries matching `f`, oldest first (keys ascend with time)."""
        node = parse(f.text, plain=not f.fts) if f.text else None
        low = None if f.since is None else _micros(f.since) * SLOTS
        high = None if f.until is None else _micros(f.until) * SLOTS
        out = []
        for key in sorted(state.keys):
            if (low is not None and key < low) or (high is not None and key >= high):
                continue
            stored = state.entries[state.keys[key]]
            row = stored.row
            if (
                (f.sources and row.source not in f.sources)
                or (f.providers and row.provider not in f.providers)
                or (f.statuses and row.status not in f.statuses)
                or (node is not None and not _matches(node, stored.words))
            ):
                continue
            out.append(stored)
        return out

    def search(self, filters: Filters, *, limit: int | None = 50) -> list[Row]:
        """Entries matching `filters`, newest first, at most `limit` (None or 0: all)."""
        with self._lock:
            self._open()
            found = self._select(self._state, filters)[::-1]
        return [copy.deepcopy(s.row) for s in (found[:limit] if limit else found)]

    def changes_after(
        self, seq: int, *, filters: Filters | None = None, limit: int = 1000
    ) -> list[tuple[int, Row]]:
        """Entries stored or changed after change `seq`, oldest change first."""
        with self._lock:
            self._open()
            found = [s for s in self._select(self._state, filters or Filters()) if s.seq > seq]
        found.sort(key=lambda s: s.seq)
        return [(s.seq, copy.deepcopy(s.row)) for s in found[:limit]]

    def last_change(self) -> int:
        """The latest change number (0 for an empty store)."""
        with self._lock:
            self._open()
            return self._state.seq

    def source_stats(self) -> list[dict[str, Any]]:
        """Per source: entries, failures, pending, invalid, last poll, success, error, cursor."""
        with self._lock:
            self._open()
            state = self._state
            counts: dict[str, dict[str, int]] = {}
            for stored in state.entries.values():
                c = counts.setdefault(stored.row.source, dict.fromkeys(Status, 0))
                c[Status(stored.row.status)] += 1
            runs: dict[str, list[_Run]] = {}
            for run in state.runs.values():
                runs.setdefault(run.source, []).append(run)
            out = []
            for source in sorted(set(counts) | set(runs) | set(state.cursors)):
                c = counts.get(source, dict.fromkeys(Status, 0))
                mine = runs.get(source, [])
                ended = [r for r in mine if r.finished is not None]
                failed = [r for r in mine if r.error is not None]
                successes = [r.finished for r in ended if r.error is None and r.finished]
                out.append(
                    {
                        "source": source,
                        "entries": sum(c.values()),
                        "failures": c[Status.FAILURE],
                        "pending": c[Status.PENDING],
                        "invalid": c[Status.INVALID],
                        "last_poll": max((r.started for r in mine), default=None),
                        "last_success": max(successes, default=None),
                        "last_error": ended[-1].error if ended else None,
                        "last_error_at": failed[-1].finished if failed else None,
                        "cursor": copy.deepcopy(state.cursors.get(source, (None, ""))[0]),
                    }
                )
            return out

    def stats(self, *, since: datetime | None = None, by: str = "source") -> list[dict[str, Any]]:
        """Counts and failure rates grouped by `source`, `provider` or `status`."""
        if by not in ("source", "provider", "status"):
            raise KeyError(by)
        with self._lock:
            self._open()
            groups: dict[str, list[int]] = {}
            for stored in self._select(self._state, Filters(since=since)):
                g = groups.setdefault(getattr(stored.row, by), [0, 0, 0])
                g[0] += 1
                g[1] += stored.row.status == "failure"
                g[2] += stored.row.status == "pending"
        return [
            {
                by: grp,
                "entries": n,
                "failures": failures,
                "failure_rate": round(failures / n * 100, 2) if n else 0.0,
                "pending": pending,
            }
            for grp, (n, failures, pending) in sorted(groups.items())
        ]

    def bucket_stats(
        self, *, since: datetime, by: Literal["day", "hour"], local: bool = False
    ) -> list[dict[str, Any]]:
        """Per source and day or hour (UTC, or the local zone's with `local`) from `since` on:
        entries, failures, failure_rate, pending; empty buckets left out."""
        groups: dict[tuple[str, str], list[int]] = {}
        with self._lock:
            self._open()
            for stored in self._select(self._state, Filters(since=since)):
                when = datetime.fromisoformat(stored.row.timestamp)
                if local:
                    when = when.astimezone()
                label = when.strftime("%Y-%m-%d" if by == "day" else "%Y-%m-%d %H:00")
                g = groups.setdefault((stored.row.source, label), [0, 0, 0])
                g[0] += 1
                g[1] += stored.row.status == "failure"
                g[2] += stored.row.status == "pending"
        return [
            {
                "source": source,
                by: bucket,
                "entries": n,
                "failures": failures,
                "failure_rate": round(failures / n * 100, 2) if n else 0.0,
                "pending": pending,
            }
            for (source, bucket), (n, failures, pending) in sorted(groups.items())
        ]

    def names(self, kind: Literal["source", "provider"], *, only: str | None = None) -> list[str]:
        """Every source (with entries, poll runs or a cursor) or provider stored, sorted; with
        `only`, whether that one is (`[only]` or `[]`)."""
        with self._lock:
            self._open()
            state = self._state
            known = {getattr(s.row, kind) for s in state.entries.values()}
            if kind == "source":
                known |= {r.source for r in state.runs.values()} | set(state.cursors)
        if only is not None:
            return [only] if only in known else []
        return sorted(known)

    # -- the daemons' schedule and leases ----------------------------------------------------

    def set_schedule(
        self, daemon: str, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when daemon `daemon` next polls `source`, its interval, failures in a row."""
        with self._lock:
            self._open()
            self._schedule[source] = {
                "daemon": daemon,
                "next_run": next_run.astimezone(UTC).isoformat(timespec="seconds")
                if next_run
                else None,
                "interval": interval,
                "consecutive_failures": failures,
            }

    def clear_schedule(self, daemon: str, sources: Sequence[str] | None = None) -> None:
        """Forget daemon `daemon`'s schedule of `sources` (all of its rows when None)."""
        with self._lock:
            self._open()
            for source, row in list(self._schedule.items()):
                if row["daemon"] == daemon and (sources is None or source in sources):
                    del self._schedule[source]

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per scheduled source: daemon, next_run, interval, consecutive_failures."""
        with self._lock:
            self._open()
            return {s: dict(row) for s, row in self._schedule.items()}

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew lease `name`; None while another holder's has not expired."""
        with self._lock:
            self._open()
            now = self.clock()
            current = self._leases.get(name)
            if current is not None and current.holder != holder and current.expires_at > now:
                return None
            token = self._lease_tokens.get(name, 0)
            if current is None or current.holder != holder or current.expires_at <= now:
                token += 1  # a new holder (or a lapsed one back): a new fencing token
            self._lease_tokens[name] = token
            lease = Lease(name, holder, token, now + timedelta(seconds=ttl))
            self._leases[name] = lease
            return lease

    def _check_lease(self, lease: Lease) -> None:
        current = self._leases.get(lease.name)
        if (
            current is None
            or current.token != lease.token
            or current.holder != lease.holder
            or current.expires_at <= self.clock()
        ):
            raise LeaseLost(
                f"lease {lease.name} of {lease.holder} passed to another holder or lapsed; "
                "nothing was written"
            )

    def release_lease(self, lease: Lease) -> None:
        """Give a lease up early (no-op when it already passed to another holder)."""
        with self._lock:
            current = self._leases.get(lease.name)
            if current is not None and current.token == lease.token:
                self._leases[lease.name] = replace(current, expires_at=self.clock())

    def leases(self) -> list[Lease]:
        """Every lease, expired ones included."""
        with self._lock:
            return sorted(self._leases.values(), key=lambda lease: lease.name)

    # -- the outbox ----------------------------------------------------------------------

    def claim_due(
        self,
        sink: str,
        holder: str,
        ttl: float,
        now: datetime,
        *,
        ids: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Delivery]:
        """Due pending deliveries to `sink`, oldest first, claimed by `holder` for `ttl`s.

        First in, first out: without `ids`, the lane stops at its first pending row that is
        not due yet or is claimed by another holder (what follows waits behind it).
        """
        with self._lock:
            self._open()
            out: list[_Outbox] = []
            for item in sorted(self._state.outbox.values(), key=lambda o: o.order):
                d = item.delivery
                if d.sink != sink or d.state != "pending" or (ids and d.delivery_id not in ids):
                    continue
                taken = (
                    item.holder is not None
                    and item.holder != holder
                    and item.claimed_until is not None
                    and item.claimed_until > now
                )
                if datetime.fromisoformat(d.next_attempt_at) > now or taken:
                    if ids:
                        continue
                    break
                out.append(item)
                if len(out) >= limit:
                    break
            until = now + timedelta(seconds=ttl)
            for item in out:
                item.holder, item.claimed_until = holder, until
            return [copy.copy(item.delivery) for item in out]

    def record_attempts(
        self,
        attempts: Sequence[Attempt],
        *,
        hold: Sequence[str] = (),
        until: datetime | None = None,
    ) -> None:
        """Record attempts (ending their claims) and hold pending `hold` until `until`."""
        with self._lock:
            self._open()
            outbox = self._state.outbox
            for a in attempts:
                item = outbox.get(a.delivery_id)
                if item is None:
                    continue
                d = item.delivery
                item.delivery = replace(
                    d,
                    state=a.state,
                    attempts=d.attempts + 1,
                    last_status=a.status,
                    last_error=a.error,
                    next_attempt_at=_iso(a.next_attempt_at),
                    updated_at=_iso(a.at),
                )
                item.holder = item.claimed_until = None
            if until is None:
                return
            for delivery_id in hold:
                item = outbox.get(delivery_id)
                if item is None or item.delivery.state != "pending":
                    continue
                later = max(datetime.fromisoformat(item.delivery.next_attempt_at), until)
                item.delivery = replace(item.delivery, next_attempt_at=_iso(later))
                item.holder = item.claimed_until = None

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        """The sinks with a pending delivery due (among `ids` when given)."""
        with self._lock:
            self._open()
            return sorted(
                {
                    o.delivery.sink
                    for o in self._state.outbox.values()
                    if o.delivery.state == "pending"
                    and datetime.fromisoformat(o.delivery.next_attempt_at) <= now
                    and (not ids or o.delivery.delivery_id in ids)
                }
            )

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        """When the next delivery to one of `sinks` is due (each lane's oldest pending row)."""
        with self._lock:
            self._open()
            first: dict[str, _Outbox] = {}
            for item in sorted(self._state.outbox.values(), key=lambda o: o.order):
                d = item.delivery
                if d.state == "pending" and d.sink in sinks and d.sink not in first:
                    first[d.sink] = item
            times = [datetime.fromisoformat(i.delivery.next_attempt_at) for i in first.values()]
        return min(times, default=None)

    def list_deliveries(
        self,
        *,
        state: DeliveryState | None = None,
        ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Delivery]:
        """Outbox rows, newest first, optionally one state or the given delivery ids."""
        with self._lock:
            self._open()
            rows = [
                copy.copy(o.delivery)
                for o in sorted(self._state.outbox.values(), key=lambda o: -o.order)
                if (state is None or o.delivery.state == state)
                and (not ids or o.delivery.delivery_id in ids)
            ]
        return rows[:limit] if limit else rows

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        """Per source or sink: pending, dead and done delivery counts."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            self._open()
            for o in self._state.outbox.values():
                key = o.delivery.source if by == "source" else o.delivery.sink
                out.setdefault(key, dict.fromkeys(STATES, 0))[o.delivery.state] += 1
        return out

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        """Make deliveries due now: the named ones (dead included), else every pending one."""
        stamp = _iso(now)
        with self._lock:
            self._open()
            found = []
            for o in sorted(self._state.outbox.values(), key=lambda o: o.order):
                d = o.delivery
                named = d.delivery_id in ids
                if (ids and named and d.state in ("pending", "dead")) or (
                    not ids and d.state == "pending"
                ):
                    updated = stamp if ids else d.updated_at
                    o.delivery = replace(
                        d, state="pending", next_attempt_at=stamp, updated_at=updated
                    )
                    found.append(d.delivery_id)
        return found

    def sink_position(self, sink: str) -> int:
        """How far a sink that follows the change sequence got (0 before its first send)."""
        with self._lock:
            self._open()
            return self._positions.get(sink, 0)

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        """Record that `sink` has everything up to change `seq` (never moves back)."""
        with self._lock:
            self._open()
            if lease is not None:
                self._check_lease(lease)
            self._positions[sink] = max(seq, self._positions.get(sink, 0))

    # -- retention -----------------------------------------------------------------------

    def apply_retention(
        self,
        older_than: float,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> RetentionResult:
        """Delete entries, poll runs, status changes and delivered alerts older than
        `older_than` seconds (each source's latest good and latest failed run stay)."""
        cutoff = (now or self.clock()) - timedelta(seconds=older_than)
        result = RetentionResult(cutoff)
        key, stamp = _micros(cutoff) * SLOTS, _iso(cutoff)
        with self._lock:
            self._open()
            state = self._state
            for old in [k for k in state.keys if k < key]:
                del state.entries[state.keys.pop(old)]
                result.entries += 1
            keep = {}
            for run_id, run in state.runs.items():
                keep[(run.source, run.error is None)] = run_id
            for run_id in [
                i for i, r in state.runs.items() if r.started < stamp and i not in keep.values()
            ]:
                del state.runs[run_id]
                result.poll_runs += 1
            before = len(state.status_changes)
            state.status_changes = [c for c in state.status_changes if c[4] >= stamp]
            result.status_changes = before - len(state.status_changes)
            for delivery_id, o in list(state.outbox.items()):
                if o.delivery.state == "done" and o.delivery.updated_at < stamp:
                    del state.outbox[delivery_id]
                    result.deliveries += 1
        return result


if TYPE_CHECKING:  # mypy checks that the memory store is a whole `Store`
    _check: type[Store] = MemoryStore
