"""`logd run` as systemd runs it: a subprocess, FleetIT simulators in this process, signals,
a NOTIFY_SOCKET bound here. Every wait is a condition with a deadline."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from click.testing import CliRunner
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.plugin.entries import Entry, Status
from logd.plugin.testing import write_config
from logd.store.sqlite.store import Store

DEADLINE = 15.0


def wait_until(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    """Poll `cond` until it is truthy; fail the test (saying what) at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Notifications:
    """A NOTIFY_SOCKET in the abstract namespace, read continuously as systemd reads it."""

    def __init__(self) -> None:
        self.address = f"@logd-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return

    def drain(self) -> list[str]:
        """Every message received so far."""
        return list(self.messages)

    def wait_for(self, field: str, after: int = 0, timeout: float = DEADLINE) -> int:
        """Index of the first message from `after` on with the line `field` (or `KEY=` prefix)."""

        def find() -> int | None:
            for i, msg in enumerate(self.drain()[after:], start=after):
                lines = msg.split("\n")
                if field in lines or (
                    field.endswith("=") and any(x.startswith(field) for x in lines)
                ):
                    return i + 1
            return None

        return int(wait_until(find, timeout, f"notify {field!r}")) - 1

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """`python -m logd run -c CONFIG` with stderr in a file and a read-only view of its store."""

    def __init__(self, directory: Path, notify: Notifications | None = None, **env: str) -> None:
        self.directory = directory
        self.config = directory / "config.toml"
        self.db = directory / "logd.db"
        self.stderr_path = directory / f"stderr-{uuid.uuid4().hex[:6]}.log"
        environ = {**os.environ, **env}
        for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            environ.pop(var, None)
        if notify is not None:
            environ["NOTIFY_SOCKET"] = notify.address
        environ.update(env)
        self.stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logd", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=environ,
        )

    def log(self) -> str:
        """Everything the daemon logged so far."""
        return self.stderr_path.read_text()

    def wait_log(self, pattern: str, timeout: float = DEADLINE, after: int = 0) -> int:
        """Wait for a log line matching `pattern` past offset `after`; return the end offset."""

        def find() -> int | None:
            match = re.compile(pattern).search(self.log(), after)
            return match.end() if match else None

        return int(wait_until(find, timeout, f"log {pattern!r}\n--- log ---\n{self.log()}"))

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the daemon's store while it runs (as `logd status` does)."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []
        finally:
            conn.close()

    def count(self, source: str | None = None) -> int:
        """Stored entries (of `source`)."""
        if source is None:
            rows = self.query("SELECT count(*) FROM entries")
        else:
            rows = self.query("SELECT count(*) FROM entries WHERE source = ?", source)
        return int(rows[0][0]) if rows else 0

    def runs(self, source: str, *, ok: bool | None = None) -> list[tuple[str, str | None]]:
        """Finished poll runs of `source`: (started, error)."""
        rows = self.query(
            "SELECT started, error FROM poll_runs WHERE source = ? AND finished IS NOT NULL "
            "ORDER BY id",
            source,
        )
        if ok is None:
            return rows
        return [r for r in rows if (r[1] is None) == ok]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        """Send `sig` and wait for the exit code."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"daemon did not exit within {timeout}s of {sig}\n{self.log()}")

    def kill(self) -> None:
        """Make sure the process is gone (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stderr.close()


@pytest.fixture
def notify() -> Iterator[Notifications]:
    n = Notifications()
    yield n
    n.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def source(sim: FleetITSimulator, name: str, interval: float = 1, **extra: Any) -> dict[str, Any]:
    """A FleetIT source on `sim` polled every `interval` seconds, with fast retries."""
    return {
        **sim.demo_source(name),
        "interval": interval,
        "retry": {"attempts": 2, "max_wait": 0.1},
        **extra,
    }


def closed_port_source(name: str) -> dict[str, Any]:
    """A source whose vendor is down: nothing listens on its port."""
    return {
        "name": name,
        "provider": "fleetit",
        "base_url": f"http://127.0.0.1:{free_port()}",
        "token": "t0ken",
        "interval": 1,
        "retry": {"attempts": 1, "max_wait": 0.1},
    }


def test_polls_on_schedule_survives_a_failing_source_and_notifies_systemd(
    tmp_path: Path, notify: Notifications, daemons: list[Daemon]
) -> None:
    with FleetITSimulator(records=120) as sim:
        write_config(tmp_path, [source(sim, "fleet"), closed_port_source("down")], log_level="info")
        d = Daemon(tmp_path, notify, WATCHDOG_USEC="400000")
        daemons.append(d)

        ready = notify.wait_for("READY=1")
        # READY comes once both sources are scheduled: their next runs are in the store.
        scheduled = {r[0] for r in d.query("SELECT source FROM daemon_schedule")}
        assert scheduled == {"fleet", "down"}

        # First start on an empty store backfills everything.
        wait_until(lambda: d.count("fleet") == 120, what="backfill")
        # Polls on schedule: three successful polls, not back to back. A first poll that ran
        # late (a loaded machine) shortens the gap to the next planned run, so the bound is
        # well under the interval; back to back would be a few milliseconds.
        wait_until(lambda: len(d.runs("fleet", ok=True)) >= 3, what="three polls of fleet")
        starts = [datetime.fromisoformat(r[0]) for r in d.runs("fleet", ok=True)]
        gaps = [(b - a).total_seconds() for a, b in pairwise(starts)]
        assert all(gap >= 0.3 for gap in gaps), gaps
        sim.add_records(5)
        wait_until(lambda: d.count("fleet") == 125, what="new records on a later poll")

        # The source that is down: logged with the vendor's error, recorded, backing off.
        wait_until(lambda: len(d.runs("down", ok=False)) >= 2, what="two failed polls of down")
        log = d.log()
        assert re.search(r"poll down: .*Connection refused; \d failure\(s\) in a row", log), log
        assert re.search(r"poll fleet: \d+ pages, \d+ new, \d+ updated, \d+ failures", log), log
        (failures, interval) = d.query(
            "SELECT consecutive_failures, interval FROM daemon_schedule WHERE source = 'down'"
        )[0]
        assert failures >= 2 and interval >= 4.0  # 1s doubled twice
        failed_starts = [datetime.fromisoformat(r[0]) for r in d.runs("down", ok=False)]
        assert (failed_starts[1] - failed_starts[0]).total_seconds() >= 1.8  # backed off
        assert d.proc.poll() is None  # one source down never stops the daemon

        # `logd status` against the running daemon's database.
        result = CliRunner().invoke(cli, ["status", "--db", str(d.db), "--format", "json"])
        assert result.exit_code == 0, result.output
        status = {row["source"]: row for row in json.loads(result.output)}
        assert status["fleet"]["state"] == "ok" and status["fleet"]["next_run"]
        assert status["fleet"]["entries"] == 125
        assert status["down"]["state"] == "failing"
        assert "Connection refused" in status["down"]["last_error"]
        assert status["down"]["consecutive_failures"] >= 2

        # systemd heard: a STATUS line per poll naming the failing source, watchdog pings.
        notify.wait_for("STATUS=", after=ready + 1)
        assert any("failing: down" in m for m in notify.drain())
        notify.wait_for("WATCHDOG=1")

        stopping_from = len(notify.drain())
        assert d.stop() == 0
        notify.wait_for("STOPPING=1", after=stopping_from)
        assert d.query("SELECT count(*) FROM daemon_schedule")[0][0] == 0

        # A restart resumes from the stored cursor: its first request is a date window.
        before = len(sim.requests)
        again = Daemon(tmp_path)
        daemons.append(again)
        wait_until(lambda: len(sim.requests) > before, what="a poll after the restart")
        assert sim.requests[before].arg("timestamp_after"), sim.requests[before].query
        assert again.stop() == 0


def test_sigterm_mid_poll_commits_whole_batches_and_exits_0(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    with FleetITSimulator(records=800) as sim:
        sim.latency = 0.3  # eight pages: a poll that is still running when the signal comes
        write_config(tmp_path, [source(sim, "fleet", interval=3600)])
        d = Daemon(tmp_path, JOURNAL_STREAM="8:12345")  # as under systemd: journald reads stderr
        daemons.append(d)
        wait_until(lambda: d.count() >= 100, what="the first batch committed")
        assert d.stop() == 0
        assert "stopping after a committed batch" in d.log()
        # One line per event, syslog priority prefixes, no timestamps (journald adds its own).
        lines = d.log().splitlines()
        assert "<6>logd.daemon: stopping: waiting up to 30s for running polls to commit" in lines
        assert all(re.match(r"<\d>logd[.\w]*: ", line) for line in lines), lines
        stored = d.count()
        assert stored % 100 == 0 and 100 <= stored < 800, stored  # whole batches, cut short
        runs = d.query("SELECT finished, error, pages, new FROM poll_runs")
        assert len(runs) == 1
        finished, error, pages, new = runs[0]
        assert finished is not None and error is None  # the run was closed, not abandoned
        assert new == stored and pages == stored // 100


def test_sighup_adds_and_removes_sources_and_a_bad_config_keeps_the_old_one(
    tmp_path: Path, notify: Notifications, daemons: list[Daemon]
) -> None:
    with FleetITSimulator(records=30) as sim:
        write_config(tmp_path, [source(sim, "a")])
        d = Daemon(tmp_path, notify)
        daemons.append(d)
        notify.wait_for("READY=1")
        wait_until(lambda: d.count("a") == 30, what="a polled")

        # A new source is picked up on SIGHUP.
        write_config(tmp_path, [source(sim, "a"), source(sim, "b")])
        mark = len(notify.drain())
        d.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=mark)
        notify.wait_for("READY=1", after=reloading)
        wait_until(lambda: d.count("b") == 30, what="b polled after the reload")

        # An invalid file is reported and the running config kept: both still polled.
        d.config.write_text(d.config.read_text() + "\nbogus_key = 1\n")
        at = d.wait_log(r"reloading")
        d.proc.send_signal(signal.SIGHUP)
        at = d.wait_log(r"reload failed; keeping the running config: .*bogus_key", after=at)
        runs_a, runs_b = len(d.runs("a")), len(d.runs("b"))
        wait_until(
            lambda: len(d.runs("a")) > runs_a and len(d.runs("b")) > runs_b,
            what="both sources polled after the bad reload",
        )
        assert d.proc.poll() is None

        # A removed source stops being polled; the others go on.
        write_config(tmp_path, [source(sim, "b")])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"source a removed", after=at)
        runs_a = len(d.runs("a"))  # at most one poll of a was already under way
        runs_b = len(d.runs("b"))
        wait_until(lambda: len(d.runs("b")) >= runs_b + 2, what="b polled twice more")
        assert len(d.runs("a")) <= runs_a + 1
        assert [r[0] for r in d.query("SELECT source FROM daemon_schedule")] == ["b"]
        assert d.stop() == 0


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _entry(native_id: str, when: datetime, message: str) -> Entry:
    entry = Entry(native_id=native_id, timestamp=when, status=Status.SUCCESS, message=message)
    return entry


def test_metrics_webhook_delivery_and_retention_in_the_daemon(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # A store from an earlier life: 40 entries from a month ago, 10 from yesterday.
    now = datetime.now(UTC)
    with Store(tmp_path / "logd.db") as store:
        store.commit_batch(
            "old",
            [_entry(f"m{i}", now - timedelta(days=30), f"ancient {i}") for i in range(40)],
            None,
            provider="fleetit",
        )
        store.commit_batch(
            "old",
            [_entry(f"y{i}", now - timedelta(days=1), f"recent {i}") for i in range(10)],
            None,
            provider="fleetit",
        )
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    try:
        with FleetITSimulator(records=60) as sim:
            write_config(
                tmp_path,
                [source(sim, "fleet", interval=3600)],
                retention="7d",
                metrics_listen=f"127.0.0.1:{port}",
                webhooks=[
                    {
                        "name": "ops",
                        "url": f"http://127.0.0.1:{receiver.server_port}/hook",
                        "secret": "s3cret-value",
                        # The first poll is a backfill: this test counts its deliveries.
                        "alert_backfill": True,
                    }
                ],
            )
            d = Daemon(tmp_path)
            daemons.append(d)
            # Retention runs at start: the month-old entries go, FTS in step.
            wait_until(lambda: d.count("old") == 10, what="retention of old entries")
            d.wait_log(r"retention: deleted 40 entries")
            wait_until(lambda: d.runs("fleet", ok=True), what="fleet polled")
            entries = d.count()
            assert d.query("SELECT count(*) FROM entries_fts_docsize")[0][0] == entries
            assert (
                d.query("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'ancient'")[0][0]
                == 0
            )
            assert (
                d.query("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'recent'")[0][0]
                == 10
            )

            # The poll queued the new failures; the delivery job sent them.
            wait_until(lambda: _Receiver.bodies, what="a webhook delivery")
            sent = json.loads(_Receiver.bodies[0])
            assert sent["source"] == "fleet" and sent["count"] >= 1

            def scrape() -> str:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                return text if 'logd_webhook_attempts_total{outcome="delivered"' in text else ""

            text = wait_until(scrape, what="metrics after a delivery")
            for series in (
                'logd_polls_total{outcome="ok",source="fleet"} 1.0',
                'logd_poll_errors_total{source="fleet"} 0.0',
                'logd_entries_stored_total{kind="new",source="fleet"} 60.0',
                'logd_http_requests_total{source="fleet"}',
                'logd_http_retries_total{source="fleet"} 0.0',
                'logd_last_success_timestamp_seconds{source="fleet"}',
                'logd_webhook_deliveries{source="fleet",state="done"}',
                "logd_poll_duration_seconds_bucket",
                "logd_scheduler_healthy 1.0",
            ):
                assert series in text, series
            assert "s3cret-value" not in d.log()
            assert d.stop() == 0
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_config_error_at_start_exits_2_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"database": str(tmp_path / "x.db"), "retention": "soon"}))
    proc = subprocess.run(
        [sys.executable, "-m", "logd", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 2
    assert "retention" in proc.stderr and "Traceback" not in proc.stderr
