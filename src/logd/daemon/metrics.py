"""Prometheus metrics for the daemon, served on `metrics_listen` (off by default).

Series (all prefixed `logd_`):

    polls_total{source,outcome}              polls finished, outcome "ok" or "error"
    poll_errors_total{source}                polls that ended in an error
    poll_timeouts_total{source}              of which stopped by their poll_timeout
    polls_running                            polls running now
    polls_stuck                              polls whose provider would not stop (unhealthy)
    poll_duration_seconds{source}            how long polls take (histogram)
    entries_stored_total{source,kind}        entries written, kind "new" or "updated"
    http_requests_total{source}              requests sent to the vendor
    http_retries_total{source}               of which retries
    http_rate_wait_seconds_total{source}     time requests waited on the rate budget
    last_success_timestamp_seconds{source}   end of the last poll without an error
    webhook_attempts_total{webhook,outcome}  delivery attempts: delivered, retrying, dead
    webhook_deliveries{source,state}         outbox rows now: pending, dead, done (read at scrape)
    scheduler_healthy                        1 while the scheduler's heartbeat is recent and
                                             no poll is stuck (what the watchdog pings on)

A registry of its own keeps the process collectors and anything else imported out of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from logd.config.settings import parse_listen
from logd.engine.poller import SourceReport
from logd.store.sqlite.store import Store

log = logging.getLogger("logd.metrics")


class _OutboxCollector(Collector):
    """Webhook outbox counts by source and state, read from the store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "logd_webhook_deliveries",
            "Webhook deliveries in the outbox, by source and state (pending, dead, done).",
            labels=["source", "state"],
        )
        try:
            from logd.store.sqlite.outbox import outbox_counts

            counts = outbox_counts(self.store)
        except Exception as exc:  # a scrape must answer even if the store is busy or old
            log.warning("webhook counts unavailable for metrics: %s", exc)
            counts = {}
        for source, states in sorted(counts.items()):
            for state, n in sorted(states.items()):
                family.add_metric([source, state], n)
        yield family


class Metrics:
    """The daemon's counters and gauges, and the HTTP endpoint that serves them."""

    def __init__(
        self,
        store: Store,
        *,
        healthy: Callable[[], bool] = lambda: True,
        running: Callable[[], int] = lambda: 0,
        stuck: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "logd_polls",
            "Polls finished, by outcome (ok, error).",
            ["source", "outcome"],
            registry=r,
        )
        self.poll_errors = Counter(
            "logd_poll_errors", "Polls that ended in an error.", ["source"], registry=r
        )
        self.poll_timeouts = Counter(
            "logd_poll_timeouts",
            "Polls stopped because they ran past their poll_timeout.",
            ["source"],
            registry=r,
        )
        running_gauge = Gauge("logd_polls_running", "Polls running now.", registry=r)
        running_gauge.set_function(lambda: float(running()))
        stuck_gauge = Gauge(
            "logd_polls_stuck",
            "Polls whose provider did not stop after their poll_timeout (the daemon is unhealthy).",
            registry=r,
        )
        stuck_gauge.set_function(lambda: float(stuck()))
        self.poll_duration = Histogram(
            "logd_poll_duration_seconds",
            "Poll duration.",
            ["source"],
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.entries = Counter(
            "logd_entries_stored",
            "Entries stored, by kind (new, updated).",
            ["source", "kind"],
            registry=r,
        )
        self.requests = Counter(
            "logd_http_requests", "HTTP requests sent to the vendor.", ["source"], registry=r
        )
        self.retries = Counter(
            "logd_http_retries", "HTTP requests that were retries.", ["source"], registry=r
        )
        self.rate_waited = Counter(
            "logd_http_rate_wait_seconds",
            "Seconds HTTP requests waited on the source's rate budget.",
            ["source"],
            registry=r,
        )
        self.last_success = Gauge(
            "logd_last_success_timestamp_seconds",
            "Unix time at which the source's last successful poll ended.",
            ["source"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "logd_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, retrying, dead).",
            ["webhook", "outcome"],
            registry=r,
        )
        healthy_gauge = Gauge(
            "logd_scheduler_healthy",
            "1 while the scheduler's heartbeat is recent and no poll is stuck.",
            registry=r,
        )
        healthy_gauge.set_function(lambda: 1.0 if healthy() else 0.0)
        r.register(_OutboxCollector(store))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.listen: str | None = None

    def seed(self, stats: list[dict[str, Any]]) -> None:
        """Start `last_success` from the store, so a restart does not reset it to nothing."""
        for row in stats:
            if row.get("last_success"):
                when = datetime.fromisoformat(row["last_success"]).timestamp()
                self.last_success.labels(row["source"]).set(when)

    def observe(self, report: SourceReport, finished: datetime) -> None:
        """Count one finished poll."""
        src = report.source
        self.polls.labels(src, "ok" if report.ok else "error").inc()
        # Touched even at zero: a series that exists from the start makes rate() and alerts work.
        errors = self.poll_errors.labels(src)
        timeouts = self.poll_timeouts.labels(src)
        if not report.ok:
            errors.inc()
        if report.timed_out:
            timeouts.inc()
        self.poll_duration.labels(src).observe(report.duration)
        self.entries.labels(src, "new").inc(report.new)
        self.entries.labels(src, "updated").inc(report.updated)
        self.requests.labels(src).inc(report.requests)
        self.retries.labels(src).inc(report.retries)
        self.rate_waited.labels(src).inc(report.rate_waited)
        if report.ok:
            self.last_success.labels(src).set(finished.timestamp())

    def observe_deliveries(self, by_webhook: dict[str, dict[str, int]]) -> None:
        """Count a delivery round's attempts per webhook and outcome."""
        for webhook, outcomes in by_webhook.items():
            for outcome, n in outcomes.items():
                if n:
                    self.webhook_attempts.labels(webhook, outcome).inc(n)

    def serve(self, listen: str | None) -> None:
        """Serve `/metrics` on `listen` (`host:port`), replacing the old listener; None = off."""
        if listen == self.listen and (listen is None or self._server is not None):
            return
        self.stop()
        if listen is None:
            return
        host, port = parse_listen(listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            # Metrics are for watching; their port being taken must not stop the polling.
            log.error("cannot serve metrics on %s: %s", listen, exc)
            return
        self.listen = listen
        log.info("serving metrics on http://%s/metrics", listen)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None
        self._thread = None
        self.listen = None
