"""The store interface: what the engine, delivery, daemon and CLI need of a store.

Two backends implement it: `logd.store.sqlite` (one file; one daemon writes, any number of
readers) and `logd.store.postgres` (a server several daemons share). Everything outside
`logd/store/<backend>/` talks to a store through these Protocols and value types only: no SQL,
no connection objects, no driver imports.

    store.commit_batch(source, entries, cursor, hooks=[...], run=RunProgress(run_id, pages),
                       lease=lease)              # entries + cursor + run counters + hook work,
                                                 # one transaction
    store.search(Filters(text="timeout", statuses=["failure"]), limit=50)   # newest first
    store.changes_after(seq, limit=500)          # `query --follow`, exports: the change sequence
    store.claim_due("ops-webhook", holder, ttl=60, now=now)   # deliveries one holder sends
    store.claim_lease("source:fleet", holder, ttl=30)          # who polls a source

Times are aware datetimes in and UTC ISO 8601 strings (microseconds) in rows out. Every
method raises `logd.errors.StoreError` (one line: what is wrong, what to do) for any failure of
the backend; `LeaseLost` is a `StoreError` that says a fenced write came too late.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from logd.errors import StoreError

if TYPE_CHECKING:
    import threading

    from logd.plugin.entries import Entry
    from logd.store.query_language import Node

__all__ = [
    "Attempt",
    "BatchHook",
    "BatchResult",
    "BatchTransaction",
    "Delivery",
    "DeliveryState",
    "Filters",
    "Lease",
    "LeaseLost",
    "NewDelivery",
    "RetentionResult",
    "Row",
    "RunProgress",
    "Store",
]


# -- value types --------------------------------------------------------------------------


@dataclass
class Row:
    """One stored entry as read back (the JSON shape of `query --format json` and webhooks)."""

    id: str
    source: str
    provider: str
    native_id: str
    timestamp: str
    status: str
    message: str
    error: str | None
    entity_type: str | None
    entity_id: str | None
    raw: Any
    details: Any
    #: The vendor gave no time: `timestamp` is when logd first saw the record.
    timestamp_observed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used by `query --format json` and webhook bodies."""
        return {
            "id": self.id,
            "source": self.source,
            "provider": self.provider,
            "native_id": self.native_id,
            "timestamp": self.timestamp,
            "status": self.status,
            "message": self.message,
            "error": self.error,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "raw": self.raw,
            "details": self.details,
            "timestamp_observed": self.timestamp_observed,
        }

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> Row:
        """Build from a row of (key, source, provider, native_id, timestamp, status, message,
        error, entity_type, entity_id, raw JSON text, details JSON text[, timestamp_observed])."""
        (_, source, provider, native_id, ts, status, message, error, etype, eid, raw, details) = (
            row[:12]
        )
        return cls(
            id=f"{source}:{native_id}",
            source=source,
            provider=provider,
            native_id=native_id,
            timestamp=ts,
            status=status,
            message=message,
            error=error,
            entity_type=etype,
            entity_id=eid,
            raw=json.loads(raw) if raw is not None else None,
            details=json.loads(details) if details is not None else None,
            timestamp_observed=bool(row[12]) if len(row) > 12 else False,
        )


@dataclass
class Filters:
    """What `logd query` narrows by; all optional."""

    #: Words to search for: plain words and "phrases", or with `fts` the expression language
    #: of `logd.store.query_language` (AND, OR, NOT, prefix*, columns).
    text: str | None = None
    fts: bool = False
    sources: Sequence[str] = ()
    providers: Sequence[str] = ()
    statuses: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class BatchResult:
    """What committing one batch changed."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Entries that are failures now and were not before (new failures, pending → failure).
    new_failures: list[Entry] = field(default_factory=list)
    #: The batch belongs to a source's first poll (no stored cursor before it): a backfill of
    #: history, whose failures are not news. Set by the engine.
    backfill: bool = False
    #: Quarantined records stored for the first time (status `invalid`; not in `new`).
    invalid: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class RunProgress:
    """Counters of a running poll (`Store.start_run`) that commit with the batch they count:
    `pages` more pages, and the batch's new, updated and newly failed entries."""

    run_id: int
    pages: int = 1


@dataclass(frozen=True)
class Lease:
    """A time-limited right to do one thing alone: poll a source (`source:<name>`) or drive
    a sink (`sink:<name>`). `token` grows with every change of holder (a fencing token): a
    write fenced by a lease whose token is no longer current is refused with `LeaseLost`."""

    name: str
    holder: str
    token: int
    expires_at: datetime


class LeaseLost(StoreError):
    """A write fenced by a lease came after the lease passed to another holder (or lapsed)."""


DeliveryState = Literal["pending", "dead", "done"]


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to queue for a sink: its id (it stays the same on every retry, and may be
    inside `body`, as Standard Webhooks' `webhook-id` is) and the exact bytes to send."""

    delivery_id: str
    sink: str
    source: str
    provider: str
    count: int
    body: bytes


@dataclass
class Delivery:
    """One outbox row: a delivery to one sink and where it stands."""

    delivery_id: str
    sink: str
    source: str
    provider: str
    count: int
    body: bytes
    state: str
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str

    def summary(self) -> dict[str, Any]:
        """The row for `logd webhooks list` (the body left out)."""
        return {
            "delivery_id": self.delivery_id,
            "webhook": self.sink,
            "source": self.source,
            "count": self.count,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at if self.state == "pending" else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
        }


@dataclass
class Attempt:
    """One attempt's outcome, as recorded: the new state, the HTTP status, what went wrong."""

    delivery_id: str
    state: str  # the stored state: pending (to retry), done or dead
    status: int | None
    error: str | None
    next_attempt_at: datetime
    at: datetime


@dataclass
class RetentionResult:
    """What one retention pass removed."""

    cutoff: datetime
    entries: int = 0
    poll_runs: int = 0
    status_changes: int = 0
    deliveries: int = 0
    pages_freed: int = 0


# -- what runs inside a batch's transaction -----------------------------------------------


class BatchTransaction(Protocol):
    """What a batch hook may do inside the transaction that commits a batch: read the rows
    of this batch as stored, ask which match a search expression, queue deliveries. All of
    it commits or rolls back with the batch."""

    @property
    def source(self) -> str:
        """The source whose batch this is."""
        ...

    @property
    def provider(self) -> str:
        """The provider the batch's source polls through."""
        ...

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        """The stored rows of these entries of this source, by key (keys ascend with time)."""
        ...

    def matching(self, expression: Node, keys: Sequence[int]) -> set[int]:
        """Which of `keys` hold entries matching a parsed search expression (as `query`)."""
        ...

    def enqueue(self, delivery: NewDelivery, now: datetime) -> None:
        """Queue a delivery, due at `now`."""
        ...


#: Called inside the batch's transaction with what the batch changed, so that work depending
#: on it (outbox rows) commits or rolls back with the entries.
BatchHook = Callable[[BatchTransaction, BatchResult], None]


# -- the store ----------------------------------------------------------------------------


class Store(Protocol):
    """A logd store. Thread-safe: the daemon's poll, delivery and status threads share one."""

    #: Where it is, safe to print (a file path, or a database URL with its password masked).
    location: str

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...

    # -- writing a source's entries ------------------------------------------------------

    def prepare(self, entry: Entry, provider: str) -> object:
        """Work on one entry of a source of `provider` that can happen outside the
        transaction (in the fetching thread): hand the results to `commit_batch(prepared=)`,
        with the same `provider`. Opaque to the caller."""
        ...

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
        """Store entries of `source`, whose provider is `provider` (the engine knows both; an
        `Entry` carries neither), the source's cursor, the run's counters and whatever `hooks`
        do, in one transaction; unchanged entries are left alone, each change gets the next number
        of the change sequence. With `lease`, nothing is written unless it still holds
        (`LeaseLost`)."""
        ...

    def cursor(self, source: str) -> Any:
        """A source's stored cursor (JSON value), or None before its first batch."""
        ...

    def known_ids(self, source: str, native_ids: Sequence[str]) -> set[str]:
        """Which of `native_ids` are stored for `source` (quarantined records do not count)."""
        ...

    # -- poll runs ---------------------------------------------------------------------------

    def start_run(self, source: str) -> int:
        """Record the start of a poll by this process; returns its run id."""
        ...

    def finish_run(
        self, run_id: int, *, requests: int | None = None, error: str | None = None
    ) -> None:
        """Record the end of a poll, with its error if it failed."""
        ...

    def note_waiting(
        self, run_id: int, waiting: str, until: datetime, *, timeout: float = 0.5
    ) -> bool:
        """Note that a running poll waits on `waiting` until `until`; False if the store was
        busy for `timeout` seconds (the note is for `status` only, never worth a wait)."""
        ...

    def unfinished_runs(self) -> dict[str, tuple[str, int | None]]:
        """Per source whose latest poll run has no end: (started, pid of its process)."""
        ...

    def run_waits(self) -> dict[str, tuple[str, str]]:
        """Per source whose running poll noted a wait: (what it waits on, until UTC ISO)."""
        ...

    # -- reading -----------------------------------------------------------------------------

    def get(self, entry_id: str) -> Row | None:
        """One entry by its id `source:native_id`, or None."""
        ...

    def ids_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Entry ids starting with `prefix` (for completion and "did you mean")."""
        ...

    def search(self, filters: Filters, *, limit: int | None = 50) -> list[Row]:
        """Entries matching `filters`, newest first, at most `limit` (None: all)."""
        ...

    def changes_after(
        self, seq: int, *, filters: Filters | None = None, limit: int = 1000
    ) -> list[tuple[int, Row]]:
        """Entries stored or changed after change number `seq`, oldest change first, with
        their change numbers (`query --follow`, exports)."""
        ...

    def last_change(self) -> int:
        """The latest change number (0 for an empty store)."""
        ...

    def source_stats(self) -> list[dict[str, Any]]:
        """Per source: entries, failures, pending, invalid, last poll, last success, last
        error (the rows of `logd status`)."""
        ...

    def stats(self, *, since: datetime | None = None, by: str = "source") -> list[dict[str, Any]]:
        """Counts and failure rates grouped by `source`, `provider` or `status`."""
        ...

    def bucket_stats(
        self, *, since: datetime, by: Literal["day", "hour"], local: bool = False
    ) -> list[dict[str, Any]]:
        """Per source and day or hour (UTC, or the local zone's with `local`) from `since` on:
        entries, failures, failure_rate, pending (`logd stats --by day`); empty ones left out."""
        ...

    def names(self, kind: Literal["source", "provider"], *, only: str | None = None) -> list[str]:
        """Every source (with entries, poll runs or a cursor) or provider stored, sorted; with
        `only`, whether that one is (`[only]` or `[]`), cheaply (`query`'s typo check)."""
        ...

    # -- the daemons' schedule and leases ----------------------------------------------------

    def set_schedule(
        self, daemon: str, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when daemon `daemon` next polls `source`, its interval, failures in a row."""
        ...

    def clear_schedule(self, daemon: str, sources: Sequence[str] | None = None) -> None:
        """Forget daemon `daemon`'s schedule of `sources` (all of its rows when None)."""
        ...

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per scheduled source: daemon, next_run, interval, consecutive_failures."""
        ...

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew lease `name` for `holder` for `ttl` seconds; None while another
        holder's lease has not expired. A new holder gets a larger fencing token."""
        ...

    def release_lease(self, lease: Lease) -> None:
        """Give a lease up early (no-op when it already passed to another holder)."""
        ...

    def leases(self) -> list[Lease]:
        """Every lease, expired ones included (for `status`)."""
        ...

    # -- the outbox: deliveries to sinks -----------------------------------------------------

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
        """Pending deliveries to `sink` due at `now`, oldest first, claimed by `holder` for
        `ttl` seconds: no other holder gets them until then. A sink's lane is first in,
        first out: without `ids`, rows queued after one waiting for a retry wait behind it."""
        ...

    def record_attempts(
        self,
        attempts: Sequence[Attempt],
        *,
        hold: Sequence[str] = (),
        until: datetime | None = None,
    ) -> None:
        """Record attempts (which end their claims), and hold pending deliveries `hold` until
        `until` (a 429's Retry-After; no attempt counted): one transaction."""
        ...

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        """The sinks with a pending delivery due (among `ids` when given); no bodies read."""
        ...

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        """When the next delivery to one of `sinks` is due, or None when none is pending."""
        ...

    def list_deliveries(
        self,
        *,
        state: DeliveryState | None = None,
        ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Delivery]:
        """Outbox rows, newest first, optionally one state or the given delivery ids."""
        ...

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        """Per source or sink: pending, dead and done delivery counts."""
        ...

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        """Make deliveries due now: the named ones (dead included), else every pending one.
        Returns the ids made due; unknown or done ids are left out."""
        ...

    def sink_position(self, sink: str) -> int:
        """How far a sink that follows the change sequence got (0 before its first send)."""
        ...

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        """Record that `sink` has everything up to change `seq` (never moves back); fenced
        by `lease` when given."""
        ...

    # -- retention -----------------------------------------------------------------------

    def apply_retention(
        self,
        older_than: float,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> RetentionResult:
        """Delete entries, poll runs, status changes and delivered alerts older than
        `older_than` seconds, in short transactions, and give the space back."""
        ...
