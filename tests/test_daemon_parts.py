"""The daemon's parts in-process: notify protocol, watchdog health, backoff, retention, config,
status, and the systemd unit."""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner

from logd.cli.main import cli
from logd.daemon.health import Heartbeat, Watchdog
from logd.daemon.notify import Notifier, watchdog_interval
from logd.daemon.service import BACKOFF_CAP, backoff_interval, jitter_for
from logd.engine import heap
from logd.errors import ConfigError
from logd.plugin.entries import Entry, Status
from logd.plugin.testing import write_config
from logd.store.sqlite.retention import apply_retention, free_pages
from logd.store.sqlite.store import Filters, Store

REPO = Path(__file__).resolve().parents[1]


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


# -- notify ---------------------------------------------------------------------------------


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="logd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_speaks_the_protocol(sockdir: Path, abstract: bool) -> None:
    address = f"@logd-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(sockdir / "n")
    sock = _bound(address)
    notifier = Notifier(address)
    assert notifier.ready(status="2 sources\nnone failing")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 sources none failing"  # one line
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.reloading()
    fields = sock.recv(4096).decode().split("\n")
    assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=")
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()
    sock.close()


def test_notifier_without_socket_is_silent_and_a_full_socket_never_blocks(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not Notifier.from_environment().enabled
    assert Notifier.from_environment().ready() is False
    sock = _bound(str(sockdir / "full"))  # nobody reads it
    notifier = Notifier(str(sockdir / "full"))
    started = time.monotonic()
    results = [notifier.status(f"poll {i}") for i in range(500)]
    assert time.monotonic() - started < 2  # a blocking send would hang on the full queue
    assert results[0] and not results[-1]
    sock.close()
    assert Notifier(str(sockdir / "gone")).ready() is False  # logged, not raised


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


# -- health ---------------------------------------------------------------------------------


class _Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[str] = []

    def send(self, *fields: str) -> bool:
        self.sent.extend(fields)
        return True


def test_watchdog_pings_only_while_the_heartbeat_is_fresh() -> None:
    now = [100.0]
    heartbeat = Heartbeat(stale_after=15, clock=lambda: now[0])
    notifier = _Recorder()
    watchdog = Watchdog(notifier, heartbeat, interval=5)
    assert watchdog.tick() and notifier.sent == ["WATCHDOG=1"]
    now[0] += 16  # no beat for longer than stale_after: the scheduler is stuck
    assert not watchdog.tick() and notifier.sent == ["WATCHDOG=1"]
    heartbeat.beat()
    assert watchdog.tick() and notifier.sent == ["WATCHDOG=1", "WATCHDOG=1"]
    heartbeat.alive = lambda: False  # scheduler shut down: no pings whatever the beat says
    assert not watchdog.tick()


def test_watchdog_pings_stop_when_the_schedulers_heartbeat_thread_is_stuck() -> None:
    # The daemon's arrangement: the heartbeat job on an executor of its own.
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"heartbeat": ThreadPoolExecutor(1)},
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
    )
    heartbeat = Heartbeat(stale_after=0.3, alive=lambda: bool(scheduler.running))
    notifier = _Recorder()
    watchdog = Watchdog(notifier, heartbeat, interval=0.05)
    scheduler.add_job(heartbeat.beat, "interval", seconds=0.05, id="hb", executor="heartbeat")
    scheduler.start()
    watchdog.start()
    release = threading.Event()
    try:
        wait_until(lambda: watchdog.pings >= 5, what="pings while healthy")
        # Wedge the heartbeat executor's only thread, as a deadlock would.
        scheduler.add_job(release.wait, id="wedge", executor="heartbeat")
        wait_until(lambda: not heartbeat.healthy(), what="the heartbeat going stale")
        stuck_at = watchdog.pings
        time.sleep(0.3)  # several watchdog intervals pass without a ping
        assert watchdog.pings == stuck_at
        release.set()
        wait_until(lambda: watchdog.pings > stuck_at, what="pings resuming")
    finally:
        release.set()
        watchdog.stop()
        scheduler.shutdown(wait=False)
    pings = watchdog.pings
    assert not heartbeat.healthy()  # a stopped scheduler is never healthy
    assert not watchdog.tick() and watchdog.pings == pings


# -- scheduling -----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_resets_on_success() -> None:
    assert [backoff_interval(60, n) for n in range(4)] == [60, 120, 240, 480]
    assert backoff_interval(60, 50) == BACKOFF_CAP
    assert backoff_interval(60, 0) == 60  # a success restores the configured interval
    assert backoff_interval(86_400, 3) == 86_400  # never faster than configured
    assert jitter_for(1) == 0.1 and jitter_for(86_400) == 30


# -- retention ------------------------------------------------------------------------------


def _entries(source: str, when: datetime, n: int, word: str) -> list[Entry]:
    out = []
    for i in range(n):
        entry = Entry(
            native_id=f"{word}{i}",
            timestamp=when - timedelta(minutes=i),
            status=Status.FAILURE if i % 2 else Status.SUCCESS,
            message=f"{word} message {i}",
            error=f"{word} error" if i % 2 else None,
            raw={"pad": "x" * 2000, "i": i},
        )
        out.append(entry)
    return out


def test_retention_deletes_old_entries_keeps_fts_in_step_and_vacuums(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with Store(tmp_path / "logd.db") as store:
        assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.commit_batch(
            "fleet",
            _entries("fleet", now - timedelta(days=40), 700, "ancient"),
            None,
            provider="fleetit",
        )
        store.commit_batch(
            "fleet",
            _entries("fleet", now - timedelta(days=2), 300, "fresh"),
            None,
            provider="fleetit",
        )
        for _ in range(3):
            store.finish_run(store.start_run("fleet"))

        result = apply_retention(store, 30 * 86_400, now=now, chunk=200)

        assert result.entries == 700
        count = store.db.execute("SELECT count(*) FROM entries").fetchone()[0]
        assert count == 300
        # The FTS index itself (not the content table it reads through) holds 300 rows.
        assert store.db.execute("SELECT count(*) FROM entries_fts_docsize").fetchone()[0] == 300
        assert store.search(Filters(text="ancient"), limit=None) == []
        assert len(store.search(Filters(text="fresh"), limit=None)) == 300
        assert result.pages_freed > 0 and free_pages(store) == 0  # space given back
        assert store.db.execute("SELECT count(*) FROM poll_runs").fetchone()[0] == 3  # recent

        again = apply_retention(store, 30 * 86_400, now=now)
        assert again.entries == 0


def test_retention_keeps_the_latest_poll_runs_that_status_reads(tmp_path: Path) -> None:
    with Store(tmp_path / "logd.db") as store:
        for error in (None, "boom", None):
            store.finish_run(store.start_run("fleet"), error=error)
        later = datetime.now(UTC) + timedelta(days=400)  # every run is "old"
        result = apply_retention(store, 86_400, now=later)
        assert result.poll_runs == 1  # the older success; the latest success and error stay
        stats = store.source_stats()[0]
        assert stats["last_success"] and stats["last_error_at"]  # both still known


# -- config and status ----------------------------------------------------------------------


def test_retention_and_metrics_listen_config(tmp_path: Path) -> None:
    from logd.config.settings import load_settings, parse_listen

    settings = load_settings(
        write_config(tmp_path, [], retention="90d", metrics_listen="127.0.0.1:9464")
    )
    assert settings.retention == 90 * 86_400 and settings.metrics_listen == "127.0.0.1:9464"
    defaults = load_settings(write_config(tmp_path, []))
    assert defaults.retention is None and defaults.metrics_listen is None  # both off
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for key, value in (
        ("retention", "forever"),
        ("retention", 0),
        ("metrics_listen", "9464"),
        ("metrics_listen", "localhost:99999"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_settings(write_config(tmp_path, [], **{key: value}))


def test_status_shows_the_daemons_next_runs(tmp_path: Path) -> None:
    db = tmp_path / "logd.db"
    soon = datetime.now(UTC) + timedelta(seconds=30)
    with Store(db) as store:
        store.commit_batch(
            "fleet", _entries("fleet", datetime.now(UTC), 3, "x"), {"c": 1}, provider="fleetit"
        )
        store.finish_run(store.start_run("fleet"))
        store.set_schedule("d1", "fleet", soon, 60, 0)
        store.set_schedule("d1", "new", soon, 30, 0)  # scheduled, never polled yet
    result = CliRunner().invoke(cli, ["status", "--db", str(db), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["source"]: r for r in json.loads(result.output)}
    assert rows["fleet"]["next_run"] == soon.isoformat(timespec="seconds")
    assert rows["fleet"]["interval"] == 60 and rows["fleet"]["entries"] == 3
    assert rows["new"]["state"] == "never polled" and rows["new"]["next_run"]
    table = CliRunner().invoke(cli, ["status", "--db", str(db)])
    assert table.exit_code == 0 and "next run" in table.output
    with Store(db) as store:
        store.clear_schedule("d1")
    rows = {
        r["source"]: r
        for r in json.loads(
            CliRunner().invoke(cli, ["status", "--db", str(db), "-f", "json"]).output
        )
    }
    assert rows["fleet"]["next_run"] is None and "new" not in rows


# -- the systemd unit -----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "logd.service").read_text()
    assert "ExecStart=/opt/logd/venv/bin/logd run -c /etc/logd/config.toml" in unit
    # verify checks that ExecStart's binary exists: point a copy at this venv's logd.
    logd = Path(sys.executable).parent / "logd"
    copy = tmp_path / "logd.service"
    copy.write_text(unit.replace("/opt/logd/venv/bin/logd", str(logd)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if "logd.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


# -- reload, in-process ---------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    # The daemon configures the `logd` and `apscheduler` loggers; leave them as found.
    import logging

    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("logd", "apscheduler")
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_reload_applies_sources_and_webhooks_and_keeps_the_old_config_when_invalid(
    tmp_path: Path, restore_logging: None
) -> None:
    from logd_fleetit import FleetITSimulator

    from logd.daemon.service import Daemon, poll_job_id

    hook = {"name": "ops", "url": "http://127.0.0.1:9/hook", "secret": "s3cret"}
    with FleetITSimulator(records=5) as sim:
        a = {**sim.demo_source("a"), "interval": 600}
        config = write_config(tmp_path, [a])
        notifier = _Recorder()
        daemon = Daemon(config, notifier=notifier)
        threshold = gc.get_threshold()
        gc.set_threshold(700, 10, 10)
        daemon.start()
        try:
            # Start-up objects frozen, young garbage collected in larger rounds (heap.py).
            assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD and gc.get_freeze_count() > 0
            gc.unfreeze()
            gc.set_threshold(*threshold)
            assert "READY=1" in notifier.sent
            assert daemon.scheduler.get_job(poll_job_id("a")) is not None
            assert daemon.deliverer is None  # no webhooks, no lanes
            engine = daemon.engine

            # A new source and a webhook: both applied, the engine (and its providers) kept.
            b = {**sim.demo_source("b"), "interval": 900}
            write_config(tmp_path, [a, b], webhooks=[hook])
            assert daemon.reload()
            assert daemon.scheduler.get_job(poll_job_id("b")) is not None
            assert daemon.deliverer is not None
            assert daemon.engine is engine and len(engine.batch_hooks) == 1
            assert "RELOADING=1" in notifier.sent

            # Invalid: reported, nothing changes.
            config.write_text(config.read_text() + "\nretention = 'soon'\n")
            assert not daemon.reload()
            assert daemon.scheduler.get_job(poll_job_id("b")) is not None
            assert daemon.deliverer is not None

            # Removed source and webhook; a changed interval reschedules.
            write_config(tmp_path, [{**a, "interval": 1200}])
            assert daemon.reload()
            assert daemon.scheduler.get_job(poll_job_id("b")) is None
            assert daemon.deliverer is None and engine.batch_hooks == []
            trigger = daemon.scheduler.get_job(poll_job_id("a")).trigger
            assert trigger.interval == timedelta(seconds=1200)
            assert set(daemon.store.schedule()) == {"a"}
        finally:
            daemon.shutdown()
        assert "STOPPING=1" in notifier.sent


def test_retention_prunes_delivered_alerts_but_keeps_pending_and_dead(tmp_path: Path) -> None:
    with Store(tmp_path / "logd.db") as store:
        old = "2020-01-01T00:00:00+00:00"
        with store.transaction() as db:
            for i, state in enumerate(("done", "pending", "dead")):
                db.execute(
                    "INSERT INTO webhook_outbox (delivery_id, sink, source, provider, count, "
                    "body, state, next_attempt_at, created_at, updated_at) "
                    "VALUES (?, 'ops', 'fleet', 'fleetit', 1, x'7b7d', ?, ?, ?, ?)",
                    [f"dlv_{i}", state, old, old, old],
                )
        result = apply_retention(store, 86_400)
        states = [r[0] for r in store.db.execute("SELECT state FROM webhook_outbox ORDER BY id")]
    assert result.deliveries == 1 and states == ["pending", "dead"]


def test_the_daemon_sends_a_batchs_failures_once_it_commits_not_at_the_tick_or_poll_end(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from logd_fleetit import FleetITSimulator

    from logd.daemon import service as daemon_module
    from logd.delivery.receiver import Receiver
    from logd.plugin.simulator import SimRequest, SimResponse

    # The periodic round runs once at start (the outbox is empty then) and never again.
    monkeypatch.setattr(daemon_module, "DELIVERY_EVERY", 3600.0)
    second_page = threading.Event()

    class HeldAfterFirstPage(FleetITSimulator):
        def handle(self, request: SimRequest) -> SimResponse:
            if request.arg("offset", "0") != "0":
                second_page.wait(30)  # the poll stays under way: only page 1 is committed
            return super().handle(request)

    with Receiver("s3cret-value") as rx, HeldAfterFirstPage(records=150) as sim:
        sim.latency = 0.3  # page 1 commits well after the round at start
        fleet = {**sim.demo_source("fleet"), "interval": 3600, "timeout": 60}
        # The first poll is a backfill, whose failures are sent only on request.
        hook = {"name": "ops", "url": rx.url, "secret": "s3cret-value", "alert_backfill": True}
        config = write_config(tmp_path, [fleet], webhooks=[hook])
        daemon = daemon_module.Daemon(config, notifier=_Recorder())
        daemon.start()
        try:
            # Far sooner than the tick (an hour) and while the poll waits for page 2.
            received = rx.wait_for(1, timeout=10)
            assert received, "page 1's failures were not sent while the poll ran"
            assert not second_page.is_set()
            conn = sqlite3.connect(f"file:{daemon.store.path}?mode=ro", uri=True)
            try:
                failed = {
                    f"fleet:{n}"
                    for (n,) in conn.execute("SELECT native_id FROM entries WHERE status='failure'")
                }
                running = conn.execute("SELECT count(*) FROM poll_runs WHERE finished IS NULL")
                assert running.fetchone()[0] == 1
            finally:
                conn.close()
            sent = [e["id"] for got in received for e in got.json()["entries"]]
            assert received[0].verified and failed and sorted(sent) == sorted(failed)
        finally:
            second_page.set()
            daemon.shutdown()


def test_a_daemon_polls_a_source_only_while_it_holds_the_sources_lease(
    tmp_path: Path, restore_logging: None
) -> None:
    from logd_fleetit import FleetITSimulator

    from logd.daemon.service import Daemon, poll_job_id

    with FleetITSimulator(records=5) as sim:
        config = write_config(tmp_path, [{**sim.demo_source("a"), "interval": 3600}])
        with Store(tmp_path / "logd.db") as other:  # another daemon sharing the store
            held = other.claim_lease("source:a", "elsewhere:1:ff", ttl=600)
            assert held is not None
            daemon = Daemon(config, notifier=_Recorder())
            daemon.start()
            try:
                job = daemon.scheduler.get_job(poll_job_id("a"))
                deadline = time.monotonic() + 10
                while job.next_run_time <= datetime.now(UTC) + timedelta(seconds=60):
                    assert time.monotonic() < deadline, "the first poll never ran"
                    time.sleep(0.02)
                    job = daemon.scheduler.get_job(poll_job_id("a"))
                with daemon._idle:
                    assert daemon._idle.wait_for(lambda: daemon._active == 0, timeout=10)
                # Its lease is another daemon's: no poll, nothing stored, no failure counted.
                assert other.source_stats() == [] and daemon._failures["a"] == 0
                assert daemon.store.schedule()["a"]["daemon"] == daemon.daemon_id

                other.release_lease(held)
                daemon._poll("a")
                assert other.source_stats()[0]["entries"] == 5
                [lease] = [x for x in other.leases() if x.name.startswith("source:")]
                assert (lease.holder, lease.token) == (daemon.daemon_id, held.token + 1)
                assert lease.expires_at <= datetime.now(UTC)  # released after the poll
            finally:
                daemon.shutdown()
            assert other.schedule() == {}  # its own rows go with it


def test_a_held_lease_is_renewed_so_a_poll_longer_than_its_ttl_keeps_it(tmp_path: Path) -> None:
    from logd.daemon.leases import LeaseKeeper

    with Store(tmp_path / "logd.db") as store:
        keeper = LeaseKeeper(store, holder="host-a:1:aa", ttl=0.6)
        stop = threading.Event()
        keeper.start(stop)
        try:
            lease = keeper.claim("source:a")
            assert lease is not None
            time.sleep(1.5)  # more than two ttls: only renewals keep it
            assert store.claim_lease("source:a", "host-b:2:bb", 0.6) is None
            [held] = store.leases()
            assert (held.holder, held.token) == ("host-a:1:aa", lease.token)
            keeper.release(lease)
            taken = store.claim_lease("source:a", "host-b:2:bb", 0.6)
            assert taken is not None and taken.token == lease.token + 1
            # A lease that passed to another holder is dropped at the next renewal.
            again = keeper.claim("source:b")
            assert again is not None
            store.release_lease(again)
            assert store.claim_lease("source:b", "host-b:2:bb", 60) is not None
            keeper.renew()
            assert keeper.held() == []
        finally:
            stop.set()


def test_a_restart_after_a_kill_takes_the_dead_daemons_leases_at_once(
    tmp_path: Path, restore_logging: None
) -> None:
    from logd_fleetit import FleetITSimulator

    from logd.daemon.service import Daemon

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs, as a SIGKILLed daemon's
    dead = f"{socket.gethostname()}:{gone.pid}:00000000"
    with FleetITSimulator(records=5) as sim:
        config = write_config(tmp_path, [{**sim.demo_source("a"), "interval": 3600}])
        with Store(tmp_path / "logd.db") as store:
            assert store.claim_lease("source:a", dead, ttl=600) is not None
            assert store.claim_lease("source:b", "elsewhere:1:ff", ttl=600) is not None
        daemon = Daemon(config, notifier=_Recorder())
        daemon.start()
        try:
            daemon._poll("a")
            assert daemon.store.source_stats()[0]["entries"] == 5
            holders = {
                lease.name: lease.holder
                for lease in daemon.store.leases()
                if lease.name.startswith("source:")
            }
            assert holders == {"source:a": daemon.daemon_id, "source:b": "elsewhere:1:ff"}
        finally:
            daemon.shutdown()
