"""`logd run`: every enabled source polled on its interval, webhooks delivered, until stopped.

APScheduler 3 (a `BackgroundScheduler`) owns the timing; this module owns what happens around
it. Jobs, each on an executor of its own so that one kind never starves another:

    poll:<source>   every `interval` (with jitter), one instance at a time, coalesced when late;
                    a failure doubles the interval up to BACKOFF_CAP, a success restores it
    retention       at start, then daily, when `retention` is set
    heartbeat       every few seconds: the proof of life the systemd watchdog waits for

Webhooks are not a scheduler job: the deliverer runs one worker thread per webhook, woken as
soon as a batch that queued deliveries commits and by its own timer (its next due row, at
least every DELIVERY_EVERY seconds), so a slow endpoint delays only its own lane.

Signals: SIGTERM/SIGINT stop scheduling and set the stop event, so that running polls end after
the batch they are committing (waited for up to SHUTDOWN_TIMEOUT), then the process exits 0.
SIGHUP reloads the config file; a file that does not validate is logged and the running config
kept. The main thread only waits for signals; all work happens on the scheduler's threads.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import secrets
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from logd.config.settings import Settings, SourceConfig, load_settings
from logd.daemon.health import Heartbeat, Watchdog
from logd.daemon.instance_lock import InstanceLock
from logd.daemon.leases import LeaseKeeper
from logd.daemon.metrics import Metrics
from logd.daemon.notify import Notifier, watchdog_interval
from logd.delivery.deliverer import Deliverer, DeliveryStats
from logd.delivery.sinks import Follower
from logd.delivery.wiring import wire_deliveries
from logd.engine import heap
from logd.engine.poller import Engine, SourceReport
from logd.errors import ConfigError, LogdError, StoreError
from logd.logging_setup import setup as setup_logging
from logd.plugin.manager import load_plugins
from logd.store import open_store
from logd.store.interface import Store

log = logging.getLogger("logd.daemon")

POLL_WORKERS = 8  # polls at once; more sources than this queue for a free thread
DELIVERY_EVERY = 5.0
RETENTION_EVERY = 86_400.0
BACKOFF_CAP = 3600.0  # a failing source is retried at least hourly (or at its own interval)
SHUTDOWN_TIMEOUT = 30.0  # keep below the unit's TimeoutStopSec
HEARTBEAT_EVERY = 5.0
RETENTION_JOB = "retention"
HEARTBEAT_JOB = "heartbeat"


def backoff_interval(interval: float, failures: int, cap: float = BACKOFF_CAP) -> float:
    """The interval after `failures` failed polls in a row: doubled each time, up to the cap."""
    if failures <= 0:
        return interval
    # A source polled less often than the cap keeps its own interval: backoff never speeds up.
    return float(min(interval * 2 ** min(failures, 32), max(cap, interval)))


def jitter_for(interval: float) -> float:
    """Up to a tenth of the interval (at most 30 s), so sources on one interval spread out."""
    return min(interval / 10, 30.0)


def _trigger(interval: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=interval, jitter=jitter_for(interval), timezone=UTC)


def poll_job_id(source: str) -> str:
    """The scheduler job id of a source's poll."""
    return f"poll:{source}"


def new_daemon_id() -> str:
    """`host:pid:random`: names this daemon run in schedule rows and leases (and `status`);
    the random part tells apart two runs that got the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_here(daemon: str) -> bool:
    """Whether `daemon` (a `new_daemon_id`) ran on this host in a process that is gone."""
    host, _, rest = daemon.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


class Daemon:
    """One `logd run` process: settings, store, engine, scheduler and their lifecycle."""

    def __init__(
        self,
        config: Path | None,
        *,
        log_level: str | None = None,
        notifier: Notifier | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        heartbeat_every: float = HEARTBEAT_EVERY,
    ) -> None:
        self.config = config
        self.log_level_override = log_level
        self.notifier = notifier or Notifier.from_environment()
        self.shutdown_timeout = shutdown_timeout
        self.stop = threading.Event()  # polls and deliveries watch this between batches
        self._lock = threading.RLock()  # sources, failures, engine: swapped by reload
        self._sources: dict[str, SourceConfig] = {}
        self._failures: dict[str, int] = {}
        self._intervals: dict[str, float] = {}
        self._active = 0
        self._idle = threading.Condition()
        self._stop_requested = False
        self._reload_requested = False
        self._last_report: SourceReport | None = None
        # Set by the outbox hook inside a batch's transaction; seen after the commit.
        self._queued = threading.Event()
        self._tally_lock = threading.Lock()  # lanes report from their own threads
        self._delivery_tally = [0, 0, 0]  # delivered, retrying, dead: not yet logged
        self._delivery_logged = float("-inf")
        self.heartbeat_every = heartbeat_every
        self.settings: Settings
        #: Opened by `start` (None until then, and when start failed before it).
        self._store: Store | None = None
        #: Made by the first `_install`, then kept for the daemon's life.
        self.engine: Engine | None = None
        self.deliverer: Deliverer | None = None
        #: Exports following the change sequence, each in a thread of its own.
        self.followers: list[Follower] = []
        self._scheduler: BackgroundScheduler | None = None
        self._metrics: Metrics | None = None
        self.heartbeat: Heartbeat
        self.watchdog: Watchdog | None = None
        self.instance_lock: InstanceLock | None = None
        #: This run's id: its schedule rows and leases carry it.
        self.daemon_id = new_daemon_id()

    # -- the main thread ------------------------------------------------------------------

    def run(self) -> int:
        """Start, wait for signals (reloading on SIGHUP), shut down on SIGTERM/SIGINT; return 0."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        # The C-level handler writes to this socket, so select() below returns at once; the
        # Python handlers only set flags (taking a lock in a signal handler can deadlock).
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        handlers = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            signal.SIGHUP: self._on_reload_signal,
        }
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        # `kill -USR1` prints every thread's stack to stderr: how to see where a poll hangs.
        # So does the SIGABRT systemd's watchdog sends a wedged daemon, before it dies.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        faulthandler.enable(all_threads=True)
        try:
            self.start()
            while not self._stop_requested:
                select.select([wake_r], [], [], 1.0)
                try:
                    while wake_r.recv(64):
                        pass
                except BlockingIOError:
                    pass
                if self._reload_requested and not self._stop_requested:
                    self._reload_requested = False
                    self.reload()
        finally:
            self.shutdown()
            faulthandler.unregister(signal.SIGUSR1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wake_r.close()
            wake_w.close()
        return 0

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True

    # -- start, reload, shutdown ----------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store `start` opened."""
        if self._store is None:
            raise RuntimeError("the daemon has not started: no store is open")
        return self._store

    @property
    def scheduler(self) -> BackgroundScheduler:
        """The poll, maintenance and heartbeat schedule `start` made."""
        if self._scheduler is None:
            raise RuntimeError("the daemon has not started: nothing is scheduled")
        return self._scheduler

    @property
    def metrics(self) -> Metrics:
        """The Prometheus counters `start` made."""
        if self._metrics is None:
            raise RuntimeError("the daemon has not started: no metrics")
        return self._metrics

    def start(self) -> None:
        """Load the config, open the store, schedule every job, then tell systemd READY=1."""
        self.settings = load_settings(self.config)
        self._apply_log_level(self.settings)
        for line in self.settings.warnings:
            log.warning("%s", line)
        _require_enabled(self.settings)
        # Before the store opens: a second daemon must not even migrate a SQLite file. Daemons
        # sharing a PostgreSQL store are expected: leases decide who polls what.
        if isinstance(self.settings.database, Path):
            self.instance_lock = InstanceLock(self.settings.database)
            self.instance_lock.acquire()
        self._store = open_store(self.settings.database)
        self.leases = LeaseKeeper(self.store, holder=self.daemon_id, ttl=self.settings.lease_ttl)
        # This daemon's own lease, renewed while it lives: once it lapses (a kill -9 on any
        # host), the delivery claims held under this id are void for every other daemon.
        self.leases.claim(f"daemon:{self.daemon_id}")
        self.leases.start(self.stop)
        self.registry = load_plugins()
        self.heartbeat = Heartbeat(
            stale_after=max(3 * self.heartbeat_every, 1.0), stuck=lambda: self._stuck()
        )
        self._metrics = Metrics(
            self.store,
            healthy=lambda: self.heartbeat.healthy(),
            running=lambda: self.engine.running() if self.engine is not None else 0,
            stuck=lambda: len(self._stuck()),
        )
        self.metrics.seed(self.store.source_stats())
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(POLL_WORKERS, {"thread_name_prefix": "logd-poll"}),
                "maintenance": ThreadPoolExecutor(1, {"thread_name_prefix": "logd-maint"}),
                "heartbeat": ThreadPoolExecutor(1, {"thread_name_prefix": "logd-heartbeat"}),
            },
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self.heartbeat.alive = lambda: bool(self.scheduler.running)
        self.scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        self._clear_dead_daemons()
        now = datetime.now(UTC)
        with self._lock:
            self._install(self.settings, now)
        self.scheduler.add_job(
            self.heartbeat.beat,
            IntervalTrigger(seconds=self.heartbeat_every, timezone=UTC),
            id=HEARTBEAT_JOB,
            executor="heartbeat",
            next_run_time=now,
        )
        self.scheduler.add_job(
            self._retain,
            IntervalTrigger(seconds=RETENTION_EVERY, timezone=UTC),
            id=RETENTION_JOB,
            executor="maintenance",
            next_run_time=now,
        )
        heap.settle()  # start-up is over: from here on, polls allocate per record (heap.py)
        self.scheduler.start()
        self.metrics.serve(self.settings.metrics_listen)
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            self.watchdog = Watchdog(self.notifier, self.heartbeat, interval)
            self.watchdog.start()
        names = ", ".join(self._sources) or "none"
        log.info(
            "started: polling %d sources (%s); database %s",
            len(self._sources),
            names,
            self.settings.database,
        )
        self.notifier.ready(status=self.summary())

    def _install(self, settings: Settings, now: datetime) -> None:
        """Make the jobs, engine and deliverer match `settings` (holding `_lock`)."""
        hooks, deliverer, followers = self._delivery_parts(settings)
        if self.engine is None:
            self.engine = Engine(
                settings, self.store, self.registry, sleep=self._sleep, batch_hooks=hooks
            )
        else:
            # One engine for the daemon's life: it keeps each source's provider instance (and
            # its session) until that source's options change.
            self.engine.settings = settings
            self.engine.batch_hooks = list(hooks)
        old_deliverer, self.deliverer = self.deliverer, deliverer
        if old_deliverer is not None:
            old_deliverer.close()  # its workers and connections; an attempt under way ends first
        if deliverer is not None:
            deliverer.start(
                self.stop, on_round=self._delivered, busy=self._busy, idle=DELIVERY_EVERY
            )
        old_followers, self.followers = self.followers, followers
        for follower in old_followers:
            follower.close()  # its run returns; a request under way ends (sent again later)
        for follower in followers:
            threading.Thread(
                target=follower.run, args=(self.stop,), name=f"export {follower.name}", daemon=True
            ).start()
        wanted = {s.name: s for s in settings.sources if s.enabled}
        for name in [n for n in self._sources if n not in wanted]:
            self._unschedule(name)
            log.info("source %s removed: no longer polled", name)
        for name, src in wanted.items():
            old = self._sources.get(name)
            if old is None:
                first = self.store.cursor(name) is None
                log.info(
                    "source %s added: %s every %gs%s",
                    name,
                    src.provider,
                    src.interval,
                    "; first poll backfills" if first else "; resuming from its cursor",
                )
            elif old != src:
                log.info("source %s changed: polling it now with the new settings", name)
            else:
                continue
            self._sources[name] = src
            self._failures[name] = 0
            self._schedule(src, now)

    def _delivery_parts(
        self, settings: Settings
    ) -> tuple[list[Any], Deliverer | None, list[Follower]]:
        deliveries = wire_deliveries(
            settings, self.store, self.registry, on_queued=self._queued.set, holder=self.daemon_id
        )
        return deliveries.hooks, deliveries.deliverer, deliveries.followers

    def _schedule(self, src: SourceConfig, first_run: datetime) -> None:
        interval = src.interval
        self._intervals[src.name] = interval
        self.scheduler.add_job(
            self._poll,
            _trigger(interval),
            args=[src.name],
            id=poll_job_id(src.name),
            name=f"poll {src.name}",
            next_run_time=first_run,
            replace_existing=True,
        )
        self._record_schedule(src.name, first_run, interval, 0)

    def _unschedule(self, name: str) -> None:
        with suppress(JobLookupError):
            self.scheduler.remove_job(poll_job_id(name))
        self._sources.pop(name, None)
        self._failures.pop(name, None)
        self._intervals.pop(name, None)
        self.store.clear_schedule(self.daemon_id, [name])

    def reload(self) -> bool:
        """Re-read the config file and apply it; keep the running config if it is invalid."""
        self.notifier.reloading()
        log.info("reloading %s", self.config or "the config")
        try:
            new = load_settings(self.config)
            _require_enabled(new)
        except Exception as exc:  # any failure to load keeps the daemon on its running config
            text = str(exc) if isinstance(exc, LogdError) else f"{type(exc).__name__}: {exc}"
            log.error("reload failed; keeping the running config: %s", text.replace("\n", "; "))
            self.notifier.ready(status="reload failed, running config kept | " + self.summary())
            return False
        for line in new.warnings:
            log.warning("%s", line)
        with self._lock:
            if new.database != self.settings.database:
                log.warning(
                    "database changed to %s: takes effect at the next restart; still writing to %s",
                    new.database,
                    self.settings.database,
                )
                new = new.model_copy(update={"database": self.settings.database})
            self._apply_log_level(new)
            try:
                self._install(new, datetime.now(UTC))
            except StoreError as exc:
                log.error("reload: %s", exc)  # the jobs installed so far stand
            self.settings = new
        self.metrics.serve(new.metrics_listen)
        log.info(
            "reloaded: polling %d sources (%s)",
            len(self._sources),
            ", ".join(self._sources) or "none",
        )
        self.notifier.ready(status=self.summary())
        return True

    def shutdown(self) -> None:
        """Stop scheduling, let running jobs finish their batch (bounded), close; idempotent."""
        if self.stop.is_set():
            return
        if self._store is None:  # start failed before the store opened: nothing ran
            self.stop.set()
            if self.instance_lock is not None:
                self.instance_lock.release()
            return
        log.info("stopping: waiting up to %gs for running polls to commit", self.shutdown_timeout)
        self.notifier.stopping()
        self.stop.set()
        if self.deliverer is not None:
            # Webhook attempts end now (uncounted: sent again after the restart), so a slow
            # endpoint never holds the exit.
            self.deliverer.close()
        for follower in self.followers:
            follower.close()  # an export request ends now; its batch is sent again later
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with self._idle:
            done = self._idle.wait_for(lambda: self._active == 0, self.shutdown_timeout)
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._metrics is not None:
            self._metrics.stop()
        if not done:
            log.warning(
                "%d jobs still running after %gs; exiting without them (an uncommitted "
                "batch is fetched again next start)",
                self._active,
                self.shutdown_timeout,
            )
            logging.shutdown()
            # Their threads cannot be interrupted and would hold the interpreter's exit.
            os._exit(0)
        if self.deliverer is not None:
            self.deliverer.close()
        if any(self._delivery_tally):
            log.info("webhooks: %d delivered, %d to retry, %d dead", *self._delivery_tally)
        if self._store is not None:
            try:
                self.store.clear_schedule(self.daemon_id)
                self.store.close()
            except StoreError as exc:
                log.error("closing the store: %s", exc)
        if self.instance_lock is not None:
            self.instance_lock.release()
        log.info("stopped")

    def _apply_log_level(self, settings: Settings) -> None:
        setup_logging(self.log_level_override or settings.log_level)
        logd_handlers = logging.getLogger("logd").handlers
        aps = logging.getLogger("apscheduler")
        # APScheduler's own lines in the same format; its per-run chatter stays out.
        aps.handlers[:] = list(logd_handlers)
        aps.setLevel(logging.ERROR)
        aps.propagate = False

    # -- jobs -------------------------------------------------------------------------------

    @contextmanager
    def _busy(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _stuck(self) -> list[str]:
        return self.engine.stuck() if self.engine is not None else []

    def _sleep(self, seconds: float) -> None:
        # Retry waits end early on shutdown, so a stopping poll is not held by a backoff.
        self.stop.wait(seconds)

    def _poll(self, name: str) -> None:
        """The poll job: one poll of one source, then its log line, metrics and backoff."""
        if self.stop.is_set():
            return
        with self._lock:
            src = self._sources.get(name)
        if src is None:
            return
        with self._busy():
            # One daemon polls a source at a time: another one's unexpired lease skips this
            # poll (not a failure: that daemon polls it), and every batch of the poll
            # commits fenced by the lease, so a daemon that lost it writes nothing.
            lease_name = f"source:{name}"
            try:
                lease = self.leases.claim(lease_name)
            except StoreError as exc:
                self._after_poll(src, SourceReport(name, error=str(exc), done=True))
                return
            if lease is None:
                log.info("%s: another daemon holds its lease; not polling it now", name)
                return
            try:
                assert self.engine is not None  # polls are scheduled by `_install`
                report = self.engine.poll_source(
                    src, stop=self.stop, progress=self._after_batch, lease=lease
                )
            except Exception as exc:  # the engine records source errors; this is a logd bug
                log.exception("%s: poll crashed", name)
                report = SourceReport(name, error=f"internal error: {exc!r}", done=True)
            finally:
                self.leases.release(lease)
            self._after_poll(src, report)

    def _after_poll(self, src: SourceConfig, report: SourceReport) -> None:
        finished = datetime.now(UTC)
        self.metrics.observe(report, finished)
        with self._lock:
            self._last_report = report
            current = self._sources.get(src.name) is src
            failures = 0 if report.ok else self._failures.get(src.name, 0) + 1
            if current:
                self._failures[src.name] = failures
            interval = backoff_interval(src.interval, failures)
            next_run = None
            if current and not self.stop.is_set():
                next_run = self._reschedule(src.name, interval)
                self._record_schedule(src.name, next_run, interval, failures)
        when = f"next poll in {(next_run - finished).total_seconds():.0f}s" if next_run else ""
        if report.ok:
            log.info("poll %s%s", report.summary(), f"; {when}" if when else "")
        else:
            log.error(
                "poll %s; %s failure(s) in a row%s",
                report.summary(),
                failures,
                f", {when}" if when else "",
            )
        self.notifier.status(self.summary())
        if report.failures and self.deliverer is not None:
            self._kick_deliveries()

    def _clear_dead_daemons(self) -> None:
        """Drop schedule rows and give up leases of daemons that ran on this host and are
        gone (a crash leaves both: a restart after a kill would otherwise wait out each
        source's lease); live daemons' rows and leases, here or elsewhere, stay."""
        for lease in self.store.leases():
            if lease.holder != self.daemon_id and _dead_here(lease.holder):
                self.store.release_lease(lease)
        self.store.clear_schedule(self.daemon_id)
        for _ in range(1000):  # `schedule()` shows one row a source: repeat until none is dead
            dead = {row["daemon"] for row in self.store.schedule().values()}
            dead = {d for d in dead if d and d != self.daemon_id and _dead_here(d)}
            if not dead:
                return
            for daemon in dead:
                self.store.clear_schedule(daemon)

    def _record_schedule(
        self, name: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Write the schedule `logd status` shows; a store fault is logged, the poll goes on."""
        try:
            self.store.set_schedule(self.daemon_id, name, next_run, interval, failures)
        except StoreError as exc:
            log.error("%s: schedule not recorded: %s", name, exc)

    def _after_batch(self, report: SourceReport) -> None:
        # The engine calls this after each committed batch: deliveries it queued go out now,
        # not at the next tick, and not only once the whole poll (a long backfill) is done.
        if report.new or report.updated:
            self._kick_exports()
        if self._queued.is_set():
            self._queued.clear()
            self._kick_deliveries()

    def _kick_deliveries(self) -> None:
        """Wake every webhook's lane: deliveries were queued."""
        deliverer = self.deliverer
        if deliverer is not None and not self.stop.is_set():
            deliverer.kick()

    def _kick_exports(self) -> None:
        """Wake every export: entries were stored."""
        for follower in self.followers:
            follower.kick()

    def _reschedule(self, name: str, interval: float) -> datetime | None:
        job_id = poll_job_id(name)
        try:
            if interval != self._intervals.get(name):
                job = self.scheduler.reschedule_job(job_id, trigger=_trigger(interval))
                self._intervals[name] = interval
            else:
                job = self.scheduler.get_job(job_id)
        except JobLookupError:
            return None
        return job.next_run_time if job is not None else None

    def _delivered(self, stats: DeliveryStats) -> None:
        """A lane's round is over (called on its worker's thread): metrics, a log line."""
        self.metrics.observe_deliveries(stats.by_sink)
        # A backfill runs a round per committed batch: one line per DELIVERY_EVERY at most.
        with self._tally_lock:
            tally = self._delivery_tally
            for i, n in enumerate((stats.delivered, stats.retrying, stats.dead)):
                tally[i] += n
            now = time.monotonic()
            if not (any(tally) and now - self._delivery_logged >= DELIVERY_EVERY):
                return
            self._delivery_tally, self._delivery_logged = [0, 0, 0], now
        log.info("webhooks: %d delivered, %d to retry, %d dead", *tally)

    def _retain(self) -> None:
        """The retention job: delete entries older than `retention`, then vacuum."""
        retention = self.settings.retention
        if retention is None or self.stop.is_set():
            return
        with self._busy():
            try:
                result = self.store.apply_retention(retention, stop=self.stop)
            except StoreError as exc:  # retried at the next run; what was deleted stays deleted
                log.error("retention failed: %s", exc)
                return
            except Exception:
                log.exception("retention failed")
                return
        log.info(
            "retention: deleted %d entries older than %s, %d poll runs; freed %d pages",
            result.entries,
            result.cutoff.isoformat(timespec="seconds"),
            result.poll_runs,
            result.pages_freed,
        )

    def _on_job_event(self, event: SchedulerEvent) -> None:
        # Runs on the scheduler's thread with its job-store lock held: log only, take no lock.
        if isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("%s is still running; its next run waits for it", event.job_id)
        elif isinstance(event, JobExecutionEvent) and event.exception is not None:
            log.error("job %s failed: %r", event.job_id, event.exception)

    # -- reporting --------------------------------------------------------------------------

    def summary(self) -> str:
        """One line for systemd's STATUS: sources, failing ones, the last poll."""
        with self._lock:
            failing = sorted(n for n, f in self._failures.items() if f)
            total = len(self._sources)
            last = self._last_report
        line = f"{total} sources"
        line += f", failing: {', '.join(failing)}" if failing else ", none failing"
        if last is not None:
            line += (
                f"; last poll {last.source}: {last.new} new, {last.updated} updated, "
                f"{last.failures} failures" + (" (error)" if last.error else "")
            )
        return line


def _require_enabled(settings: Settings) -> None:
    """A daemon with nothing to poll is a mistake in the config, as it is for `logd sync`."""
    if not any(src.enabled for src in settings.sources):
        raise ConfigError(
            "no enabled sources to run",
            hint="add a [[sources]] table, or set enabled = true on one",
        )


def run_daemon(config: Path | None, *, log_level: str | None = None) -> int:
    """Run `logd run` in this process until a stop signal; return the exit code."""
    return Daemon(config, log_level=log_level).run()


__all__ = ["Daemon", "backoff_interval", "jitter_for", "poll_job_id", "run_daemon"]
