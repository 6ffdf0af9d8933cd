"""Polling sources: build each source's context, run its provider, commit what it yields.

A provider is called directly, never through `pm.hook` (pluggy would stop at the first
exception): each poll is isolated, and what failed is recorded for `logd status`. Sources run
concurrently in a small thread pool; the store serialises their writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlite_utils

from .config import Settings, SourceConfig
from .entries import Batch
from .errors import LogdError, SourceError, StoreError
from .http import RetryPolicy, SourceClient
from .plugins import Registry
from .prefetch import GROUP, Prefetch, merge
from .provider import PollContext, Provider
from .rows import Prepared
from .rows import prepare as prepare_row
from .store import BatchHook, BatchResult, Store

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
        return f"{head}; error: {self.error}" if self.error else head


Progress = Callable[[SourceReport], None]


def mask(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret value in `text` with `***`."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


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
        # One provider instance per source, kept while its options stay the same (a reload
        # with new options gets a fresh one), so session state survives between polls.
        self._providers: dict[str, tuple[Any, Provider[Any]]] = {}
        self._providers_lock = threading.Lock()

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
    ) -> SourceReport:
        """Poll one source; errors are recorded in the report and the store, never raised."""
        report = SourceReport(src.name)
        started = time.monotonic()

        def waiting(why: str) -> Callable[[float], None]:
            # A poll that waits says so (on the progress display) until its next batch.
            def sleep(seconds: float) -> None:
                if report.waiting_since is None:
                    report.waiting_since, report.waiting = time.monotonic(), why
                    if progress:
                        report.duration = time.monotonic() - started
                        progress(report)
                self.sleep(seconds)

            return sleep

        provider = self.provider_for(src)
        provider_cls = type(provider)
        options = src.options
        client = SourceClient(
            src.name,
            options.base_url,
            timeout=src.timeout,
            retry=RetryPolicy(attempts=src.retry.attempts, max_wait=src.retry.max_wait),
            sleep=waiting("retrying"),
            transport=self.transport(src) if self.transport else None,
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
        ctx: PollContext[Any] = PollContext(
            source=src.name,
            options=options,
            client=client,
            cursor=cursor,
            log=logging.getLogger(f"logd.source.{src.name}"),
            now=self.now,
            # Batches fetched ahead count as stored: the provider sees what a serial poll would.
            known_ids=lambda ids: self.store.known_ids(src.name, ids) | fetched.known(ids),
            pending_ids=lambda: self.store.pending_ids(src.name),
            sleep=waiting("waiting on the vendor"),
            secrets=provider.secrets(options),
            stopping=lambda: fetched.cancelled or (stop is not None and stop.is_set()),
        )
        secrets = ctx.secrets  # grows when the provider logs in: masking follows it

        def count_run(db: sqlite_utils.Database, source: str, result: BatchResult) -> None:
            # Poll-run counters commit with the batch they count.
            db.execute(
                "UPDATE poll_runs SET pages = pages + ?, new = new + ?, updated = updated + ?, "
                "failures = failures + ? WHERE id = ?",
                [pages, result.new, result.updated, len(result.new_failures), run_id],
            )

        pages = 0

        # The next pages are fetched while the store commits (prefetch.py: what stays true).
        def prepare(batch: Batch) -> list[Prepared]:
            for entry in batch.entries:
                entry.source = src.name
                entry.provider = provider_cls.name
            return [prepare_row(e) for e in batch.entries]

        fetched = Prefetch(provider.poll(ctx), name=src.name, prepare=prepare, size=_weight)
        try:
            fetched.start()
            for group in fetched.groups(self.group):
                batch, prepared = merge(group)
                pages = batch.pages
                result = self.store.commit_batch(
                    src.name,
                    batch.entries,
                    batch.cursor,
                    hooks=[count_run, *self.batch_hooks],
                    prepared=prepared,
                )
                fetched.committed(batch)
                report.waiting_since = report.waiting = None
                report.pages += batch.pages
                report.seen += len(batch.entries)
                if batch.total is not None:
                    report.total = batch.total
                report.new += result.new
                report.updated += result.updated
                report.failures += len(result.new_failures)
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
        except SourceError as exc:
            report.error = mask(str(exc), secrets)
        except StoreError as exc:
            # The store's fault, not the provider's: the batch in hand rolled back, its cursor
            # did not move, and the next poll fetches it again.
            report.error = str(exc)
        except LogdError as exc:
            report.error = mask(str(exc), secrets)
        except Exception as exc:  # a provider bug: keep the traceback in the log, go on
            report.error = mask(f"internal error in provider {provider_cls.name}: {exc!r}", secrets)
            log.error("%s: %s", src.name, report.error, exc_info=True)
        finally:
            fetched.close()  # stops the provider (its finally blocks run) and waits for it
            client.close()
            report.requests = client.requests
            report.retries = client.retries
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


def _weight(batch: Batch, prepared: list[Prepared]) -> int:
    """Bytes of serialized rows: what a fetched batch costs in memory, give or take."""
    return sum(len(p.raw or "") + len(p.details or "") + len(p.text) for p in prepared) or 1
