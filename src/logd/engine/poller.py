"""Polling sources: build each source's context, run its provider, commit what it yields.

A provider is called directly, never through `pm.hook` (pluggy would stop at the first
exception): each poll is isolated, and what failed is recorded for `logd status`. Sources run
concurrently in a small thread pool; the store serialises their writes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from logd import redact
from logd.config.settings import Settings, SourceConfig
from logd.engine.paging import PagingGuard
from logd.engine.prefetch import GROUP, PollTimeout, Prefetch, merge
from logd.errors import LogdError, StoreError
from logd.plugin import ratelimit
from logd.plugin.entries import Batch, Entry
from logd.plugin.http import RetryPolicy, SourceClient
from logd.plugin.manager import Registry
from logd.plugin.provider import PollContext, Provider
from logd.store.interface import BatchHook, Lease, RunProgress, Store

log = logging.getLogger("logd.engine")


@dataclass
class SourceReport:
    """What one poll of one source did."""

    source: str
    pages: int = 0
    requests: int = 0
    retries: int = 0
    new: int = 0
    updated: int = 0
    failures: int = 0
    #: Records quarantined as unreadable for the first time (stored with status `invalid`).
    invalid: int = 0
    duration: float = 0.0
    #: Records listed so far, and in all when the provider knows (for progress bars).
    seen: int = 0
    total: int | None = None
    error: str | None = None
    done: bool = False
    #: Since when (time.monotonic()) the poll has been waiting, and on what ("retrying", or
    #: "waiting on the vendor": an export being prepared); None once the next batch is in.
    waiting_since: float | None = None
    waiting: str | None = None
    #: The poll was stopped by its `poll_timeout`.
    timed_out: bool = False
    #: When a rate-budget wait ends (time.monotonic()), while the poll waits on its budget.
    waiting_until: float | None = None
    #: Seconds requests waited on the source's rate budget.
    rate_waited: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the poll finished without an error."""
        return self.error is None

    def summary(self) -> str:
        """One line for logs and plain output."""
        head = (
            f"{self.source}: {self.pages} pages, {self.new} new, {self.updated} updated, "
            f"{self.failures} failures, {self.requests} requests in {self.duration:.1f}s"
        )
        if self.invalid:
            head += f", {self.invalid} unreadable record(s) quarantined"
        return f"{head}; error: {self.error}" if self.error else head


Progress = Callable[[SourceReport], None]


def mask(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in `text` with `***` (`logd.redact.mask`)."""
    return redact.mask(text, secrets)


class Engine:
    """Runs polls against one store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        *,
        sleep: Callable[[float], None] = time.sleep,
        batch_hooks: Sequence[BatchHook] = (),
        transport: Callable[[SourceConfig], httpx.BaseTransport | None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        group: int = GROUP,
        stop_grace: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.sleep = sleep
        self.batch_hooks = list(batch_hooks)
        self.transport = transport
        self.now = now
        #: Most bytes of rows per transaction when fetched batches pile up (1: each alone).
        self.group = group
        #: Seconds a provider has, beyond its source's request `timeout`, to wind down once
        #: its poll's deadline passed (the request in flight ends within `timeout`).
        self.stop_grace = STOP_GRACE if stop_grace is None else stop_grace
        #: Seconds, monotonic: what poll deadlines are measured on (tests move it).
        self.clock = clock
        # One provider instance per source, kept while its options stay the same (a reload
        # with new options gets a fresh one), so session state survives between polls.
        self._providers: dict[str, tuple[Any, Provider[Any]]] = {}
        self._providers_lock = threading.Lock()
        self._running_lock = threading.Lock()
        #: Source → monotonic start of each poll running now.
        self._running: dict[str, float] = {}
        #: Source → the fetch of a poll whose provider would not stop (see `stuck`).
        self._stuck: dict[str, Prefetch] = {}
        #: Request budgets by rate group, shared by the sources that name one.
        self.budgets = ratelimit.Budgets()

    def provider_for(self, src: SourceConfig) -> Provider[Any]:
        """The provider instance polling `src`, made on first use."""
        with self._providers_lock:
            kept = self._providers.get(src.name)
            if kept is not None and kept[0] is src.options:
                return kept[1]
            provider = self.registry.provider(src.provider)()
            self._providers[src.name] = (src.options, provider)
            return provider

    def sync(
        self,
        sources: Sequence[SourceConfig],
        *,
        workers: int = 4,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> list[SourceReport]:
        """Poll each source once, to completion, concurrently; return one report each."""
        if not sources:
            return []
        stop = stop or threading.Event()
        with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
            futures = [
                pool.submit(self.poll_source, src, progress=progress, stop=stop) for src in sources
            ]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:
                # Let each poll commit the batch in hand and stop, instead of running on.
                stop.set()
                raise

    def poll_source(
        self,
        src: SourceConfig,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        lease: Lease | None = None,
    ) -> SourceReport:
        """Poll one source; errors are recorded in the report and the store, never raised.

        With `lease` (`source:<name>`, the daemon's), every batch commits fenced by it: once
        the lease passed to another holder, the next commit stores nothing (`LeaseLost`) and
        the poll ends with that error.

        The poll ends by `src.poll_deadline` seconds after it started: the provider is asked to
        stop (`ctx.stopping()`), its client is closed so a request in flight aborts, and the
        poll is recorded as failed. A provider thread that still runs `timeout` +
        `stop_grace` seconds later is left behind and reported by `stuck()`: the daemon then
        declares itself unhealthy, so that systemd restarts it.
        """
        report = SourceReport(src.name)
        started = time.monotonic()
        clock = self.clock
        deadline = clock() + src.poll_deadline
        left_behind = self._left_behind(src.name)
        if left_behind is not None:
            report.error = left_behind
            report.done = True
            with suppress(StoreError):  # shown in status when the store takes it
                self.store.finish_run(self.store.start_run(src.name), error=report.error)
            return report

        def waiting(why: str) -> Callable[[float], None]:
            # A poll that waits says so (on the progress display) until its next batch.
            def sleep(seconds: float) -> None:
                if report.waiting_since is None:
                    report.waiting_since, report.waiting = time.monotonic(), why
                    if progress:
                        report.duration = time.monotonic() - started
                        progress(report)
                # No wait outlasts the poll's deadline: a provider waiting on an export
                # wakes up in time to see `stopping()`.
                seconds = max(0.0, min(seconds, deadline - clock()))
                if why == "retrying":  # a Retry-After, or a back-off: shown in `status`
                    note_wait(why, seconds)
                self.sleep(seconds)

            return sleep

        provider = self.provider_for(src)
        provider_cls = type(provider)
        options = src.options
        # One list for the client and the context: it grows when the provider logs in, and
        # the client masks vendor error text with it before cutting that text short.
        secrets = provider.secrets(options)
        redact.register(*secrets)
        rate = src.max_rate  # inf: "off", even where the provider has a default
        if rate is None and provider_cls.max_rate:
            rate = ratelimit.parse_rate(provider_cls.max_rate)

        def rate_limited(seconds: float) -> None:
            # Shown as "rate limited, resuming in 4 s" until the wait ends.
            now = time.monotonic()
            report.waiting_since, report.waiting = now, "rate limited"
            report.waiting_until = now + seconds
            if progress:
                report.duration = now - started
                progress(report)
            note_wait("rate limited", seconds)

        noted = -math.inf  # when (monotonic) this poll last noted a wait in the store

        def note_wait(why: str, seconds: float) -> None:
            # `logd status` shows the wait, read from the poll's row: long waits only, at most
            # one write per NOTE_EVERY seconds, and skipped when the store is busy. Called
            # before the wait from the fetching thread, never from a batch's transaction.
            nonlocal noted
            now = time.monotonic()
            if seconds < NOTE_MIN_WAIT or now - noted < NOTE_EVERY or run_id is None:
                return
            noted = now
            until = self.now() + timedelta(seconds=seconds)
            if not self.store.note_waiting(run_id, why, until):
                log.debug("%s: store busy, the wait is not shown in status", src.name)

        def stopping() -> bool:
            return fetched.cancelled or (stop is not None and stop.is_set()) or clock() >= deadline

        run_id: int | None = None  # set once the poll is recorded; until then no notes
        client = SourceClient(
            src.name,
            options.base_url,
            timeout=src.timeout,
            retry=RetryPolicy(attempts=src.retry.attempts, max_wait=src.retry.max_wait),
            max_response_bytes=int(src.max_response_size),
            download_timeout=src.download_timeout,
            sleep=waiting("retrying"),
            transport=self.transport(src) if self.transport else None,
            secrets=secrets,
            budget=self.budgets.get(src.rate_group or src.name, src.name, rate),
            stopping=stopping,
            on_wait=rate_limited,
        )
        try:
            # The store failing here (locked, full, damaged) fails this poll, not the sync.
            cursor = self.store.cursor(src.name)
            run_id = self.store.start_run(src.name)
        except StoreError as exc:
            client.close()
            report.error = str(exc)
            report.duration = time.monotonic() - started
            report.done = True
            log.error("%s: %s", src.name, report.error)
            if progress:
                progress(report)
            return report
        guard = PagingGuard(
            max_pages=src.max_pages,
            last_request=lambda: mask(client.last_request, secrets),
            gets=lambda: client.gets,
        )

        def known_ids(ids: list[str]) -> set[str]:
            # Batches fetched ahead count as stored: the provider sees what a serial poll would.
            found = self.store.known_ids(src.name, ids) | fetched.known(ids)
            guard.consult(found)
            return found

        ctx: PollContext[Any] = PollContext(
            source=src.name,
            options=options,
            client=client,
            cursor=cursor,
            log=logging.getLogger(f"logd.source.{src.name}"),
            now=self.now,
            known_ids=known_ids,
            sleep=waiting("waiting on the vendor"),
            secrets=secrets,
            stopping=stopping,
        )
        # No stored cursor: this poll is the source's backfill (webhooks hold its failures).
        backfill = cursor is None

        first_invalid: Entry | None = None

        # The next pages are fetched while the store commits (prefetch.py: what stays true).
        def prepare(batch: Batch) -> list[object]:
            if batch.invalid:
                # Quarantined records go in with the batch's entries, stamped when seen: a
                # page of unreadable records is a page of records to the paging checks too.
                seen_at = self.now()
                batch.entries = [*batch.entries, *(i.to_entry(seen_at) for i in batch.invalid)]
            guard.check(batch)  # before anything of the batch is kept (paging.py)
            return [self.store.prepare(e, provider_cls.name) for e in batch.entries]

        fetched = Prefetch(provider.poll(ctx), name=src.name, prepare=prepare, size=_weight)
        with self._running_lock:
            self._running[src.name] = started
        timed_out = False
        try:
            fetched.start()
            for group in fetched.groups(self.group, deadline=deadline, clock=clock):
                batch, prepared = merge(group)
                result = self.store.commit_batch(
                    src.name,
                    batch.entries,
                    batch.cursor,
                    provider=provider_cls.name,
                    hooks=self.batch_hooks,
                    prepared=prepared,
                    backfill=backfill,
                    # Poll-run counters commit with the batch they count.
                    run=RunProgress(run_id, batch.pages),
                    lease=lease,
                )
                fetched.committed(batch)
                report.waiting_since = report.waiting = report.waiting_until = None
                report.pages += batch.pages
                report.seen += len(batch.entries)
                if batch.total is not None:
                    report.total = batch.total
                report.new += result.new
                report.updated += result.updated
                report.failures += len(result.new_failures)
                if result.invalid:
                    first_invalid = first_invalid or result.invalid[0]
                    report.invalid += len(result.invalid)
                report.requests = client.requests
                report.retries = client.retries
                for warning in batch.warnings:
                    log.warning("%s: %s", src.name, mask(warning, secrets))
                if progress:
                    report.duration = time.monotonic() - started
                    progress(report)
                if stop is not None and stop.is_set():
                    log.info("%s: stopping after a committed batch", src.name)
                    break
        except PollTimeout:
            timed_out = True
            report.timed_out = True
            report.error = (
                f"poll exceeded poll_timeout ({format_seconds(src.poll_deadline)}) and was "
                f"stopped; last request {mask(client.last_request, secrets)}; what it stored is "
                "kept (raise `poll_timeout` if this source needs longer)"
            )
        except StoreError as exc:
            # The store's fault, not the provider's: the batch in hand rolled back, its cursor
            # did not move, and the next poll fetches it again.
            report.error = str(exc)
        except LogdError as exc:  # a SourceError, or the provider's own use of another
            report.error = mask(str(exc), secrets)
        except Exception as exc:  # a provider bug: keep the traceback in the log, go on
            report.error = mask(f"internal error in provider {provider_cls.name}: {exc!r}", secrets)
            log.error("%s: %s", src.name, report.error, exc_info=True)
        finally:
            if first_invalid is not None:
                # One line per poll that stored new quarantined records; a record seen again
                # is not new, so each one is logged once.
                log.warning(
                    "%s: %d unreadable record(s) quarantined, e.g. %s: %s "
                    "(see `logd query --status invalid --source %s`)",
                    src.name,
                    report.invalid,
                    first_invalid.native_id,
                    mask(first_invalid.error or "", secrets),
                    src.name,
                )
            if timed_out:
                client.close()  # a request in flight aborts, so the provider can wind down
            # Stops the provider (its finally blocks run) and waits for it, a bounded time
            # once the deadline has passed.
            grace = src.timeout + self.stop_grace if timed_out else None
            if not fetched.close(timeout=grace):
                self._leave_behind(src.name, fetched, grace or 0.0)
            client.close()
            with self._running_lock:
                self._running.pop(src.name, None)
            report.requests = client.requests
            report.retries = client.retries
            report.rate_waited = client.rate_waited
            report.duration = time.monotonic() - started
            report.done = True
            try:
                self.store.finish_run(run_id, requests=client.requests, error=report.error)
            except StoreError as exc:  # the poll's own outcome stands; say why it is unrecorded
                log.error("%s: the poll's outcome was not recorded: %s", src.name, exc)
                report.error = report.error or str(exc)
            if progress:
                progress(report)
        return report

    # -- polls that would not stop ---------------------------------------------------------

    def running(self) -> int:
        """Polls running now."""
        with self._running_lock:
            return len(self._running)

    def stuck(self) -> list[str]:
        """Sources whose provider thread outlived its poll's deadline and grace, still running."""
        with self._running_lock:
            for name in [n for n, f in self._stuck.items() if not f.alive]:
                del self._stuck[name]
            return sorted(self._stuck)

    def _leave_behind(self, source: str, fetched: Prefetch, grace: float) -> None:
        log.error(
            "%s: the provider did not stop within %gs of its poll_timeout; its thread is left "
            "running and logd reports itself unhealthy",
            source,
            grace,
        )
        with self._running_lock:
            self._stuck[source] = fetched
        with self._providers_lock:
            self._providers.pop(source, None)  # its state is the stuck thread's

    def _left_behind(self, source: str) -> str | None:
        """The error for a poll of a source whose last provider thread still runs, if so."""
        if source not in self.stuck():
            return None
        return (
            "the previous poll's provider is still running past its poll_timeout; not polling "
            "again until it ends (logd reports itself unhealthy: restart it)"
        )


#: Waits shorter than this (seconds) are not noted for `logd status`: over before anyone looks.
NOTE_MIN_WAIT = 1.0
#: At most one wait note per poll in this many seconds: status is not worth a write per request.
NOTE_EVERY = 5.0

#: Seconds a provider has to wind down once its poll's deadline passed, beyond the request
#: `timeout` of its source.
STOP_GRACE = 10.0


def format_seconds(seconds: float) -> str:
    """`3600` → `1h`, `90` → `90s`: a duration as the config would write it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _weight(batch: Batch, prepared: list[object]) -> int:
    """Bytes of serialized rows: what a fetched batch costs in memory, give or take (a
    store's prepared values that are `Sized` say how many bytes they hold; others count 1)."""
    return sum(len(p) if isinstance(p, Sized) else 1 for p in prepared) or 1
