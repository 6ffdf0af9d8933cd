"""Every poll has a deadline (`poll_timeout`): a stuck poll is stopped, recorded, counted, shown
as polling while it runs, and one that cannot be stopped makes the daemon report unhealthy."""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any, ClassVar

import pytest
from logd_fleetit import FleetITSimulator

from logd.cli.status import collect_status, write_status
from logd.daemon import service as daemon_module
from logd.daemon.health import Heartbeat, Watchdog
from logd.daemon.notify import Notifier
from logd.engine.poller import Engine
from logd.plugin.entries import Batch, Entry, Status
from logd.plugin.manager import load_plugins
from logd.plugin.provider import PollContext, Provider, ProviderOptions
from logd.plugin.simulator import SimRequest, SimResponse
from logd.plugin.testing import SyncRun, write_config
from logd.store.sqlite.store import Store

OFFLINE = "http://127.0.0.1:9"


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Clock:
    """Monotonic seconds that a test moves past a deadline, instead of waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def jump(self, seconds: float = 3600.0) -> None:
        self.offset += seconds


class Polite(Provider[ProviderOptions]):
    """Three batches, then a vendor that never says it is done: a loop without HTTP that
    watches `ctx.stopping()`, as a provider waiting on an export does."""

    name = "polite"
    Options = ProviderOptions
    #: Called once its three batches are stored, as `stored_ids` (the test's view) says.
    on_stored: ClassVar[Callable[[], None]] = staticmethod(lambda: None)
    stored_ids: ClassVar[Callable[[], set[str]]] = staticmethod(set)

    def poll(self, ctx: PollContext[ProviderOptions]) -> Iterator[Batch]:
        n = int((ctx.cursor or {}).get("n", 0))
        mine = set()
        for _ in range(3):
            n += 1
            mine.add(str(n))
            yield Batch([Entry(str(n), ctx.now(), Status.PENDING)], cursor={"n": n})
        told = False
        while not ctx.stopping():
            if not told and mine <= type(self).stored_ids():
                told = True
                type(self).on_stored()
            time.sleep(0.01)
        # A batch it would have yielded: never committed, the poll is over.
        yield Batch([Entry("late", ctx.now(), Status.SUCCESS)], cursor={"n": -1})


class Stubborn(Provider[ProviderOptions]):
    """A provider stuck in a loop that neither makes requests nor looks at `ctx.stopping()`."""

    name = "stubborn"
    Options = ProviderOptions
    release: ClassVar[threading.Event] = threading.Event()

    def poll(self, ctx: PollContext[ProviderOptions]) -> Iterator[Batch]:
        while not self.release.is_set():
            time.sleep(0.01)
        yield Batch([Entry("done", ctx.now(), Status.SUCCESS)], cursor={"done": True})


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = load_plugins()
    monkeypatch.setitem(registry.providers, "polite", Polite)
    monkeypatch.setitem(registry.providers, "stubborn", Stubborn)


def runs(store: Store, source: str) -> list[tuple[Any, ...]]:
    return list(
        store.db.execute(
            "SELECT finished, error FROM poll_runs WHERE source = ? ORDER BY id", [source]
        ).fetchall()
    )


def test_a_poll_past_its_deadline_is_stopped_and_keeps_what_it_committed(
    tmp_path: Path, providers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = {"name": "loop", "provider": "polite", "base_url": OFFLINE, "poll_timeout": "1m"}
    run = SyncRun(tmp_path, [source])
    clock = Clock()
    run.engine.clock = clock
    # The deadline passes once the three batches are stored, whatever the machine's speed.
    monkeypatch.setattr(Polite, "on_stored", staticmethod(clock.jump))
    monkeypatch.setattr(
        Polite,
        "stored_ids",
        staticmethod(lambda: {r.native_id for r in run.rows(sources=["loop"])}),
    )
    report = run.sync()["loop"]
    assert report.timed_out and report.error is not None
    assert report.error.startswith("poll exceeded poll_timeout (1m) and was stopped")
    assert report.summary().startswith("loop: ")  # the line that names the source
    assert run.count() == 3 and run.cursor("loop") == {"n": 3}  # the late batch is not kept
    assert runs(run.store, "loop")[-1][1] == report.error
    assert run.engine.stuck() == [] and run.engine.running() == 0
    # The next poll resumes from the last committed cursor.
    assert run.sync()["loop"].timed_out and run.cursor("loop") == {"n": 6}


class Stalling(FleetITSimulator):
    """Serves page 1; every later page waits for `resume`, once page 1 is in `db`, after
    calling `on_stall` (once): a vendor that stops answering mid-walk."""

    def __init__(self, db: Path, on_stall: Callable[[], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.db, self.on_stall = db, on_stall
        self.resume = threading.Event()
        self._told = threading.Lock()

    def handle(self, request: SimRequest) -> SimResponse:
        if request.arg("offset", "0") != "0" and not self.resume.is_set():
            wait_until(lambda: stored(self.db) >= 100, what="page 1 stored")
            if self._told.acquire(blocking=False):
                self.on_stall()
            self.resume.wait(30)
        return super().handle(request)


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def test_a_poll_waiting_on_the_vendor_is_stopped_and_its_request_aborted(tmp_path: Path) -> None:
    clock = Clock()
    with Stalling(tmp_path / "logd.db", clock.jump, records=150) as sim:
        source = {**sim.demo_source("fleet"), "timeout": 1, "poll_timeout": 60}
        run = SyncRun(tmp_path, [source])
        run.engine.stop_grace = 5
        run.engine.clock = clock  # the deadline passes once page 1 is stored
        try:
            report = run.sync()["fleet"]
            assert report.timed_out and report.error is not None
            assert "poll exceeded poll_timeout (1m)" in report.error
            assert f"last request GET {sim.base_url}/v2/integrations/logs/" in report.error
            assert run.count() == 100  # page 1, committed before the vendor stalled
            # The provider wound down (its client was closed): nothing is left running.
            assert run.engine.stuck() == []
        finally:
            sim.resume.set()
        report = run.sync()["fleet"]
        assert report.ok and run.count() == 150


class _Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[str] = []

    def send(self, *fields: str) -> bool:
        self.sent.extend(fields)
        return True


def test_a_provider_that_will_not_stop_makes_the_daemon_unhealthy(
    tmp_path: Path, providers: None
) -> None:
    Stubborn.release.clear()
    source = {
        "name": "stuck",
        "provider": "stubborn",
        "base_url": OFFLINE,
        "poll_timeout": 0.3,
        "timeout": 0.1,
    }
    run = SyncRun(tmp_path, [source])
    run.engine.stop_grace = 0.1
    heartbeat = Heartbeat(stale_after=60, stuck=run.engine.stuck)
    notifier = _Recorder()
    watchdog = Watchdog(notifier, heartbeat, interval=1)
    assert watchdog.tick() and notifier.sent == ["WATCHDOG=1"]
    try:
        report = run.sync()["stuck"]
        assert report.timed_out
        assert run.engine.stuck() == ["stuck"]
        assert heartbeat.problem() == "a poll would not stop after its poll_timeout (stuck)"
        assert not watchdog.tick() and notifier.sent == ["WATCHDOG=1"]  # pings withheld
        # Its source is not polled again on top of the thread that still runs.
        again = run.sync()["stuck"]
        assert again.error is not None and "still running past its poll_timeout" in again.error
    finally:
        Stubborn.release.set()
    wait_until(lambda: run.engine.stuck() == [], what="the provider thread to end")
    assert heartbeat.healthy() and watchdog.tick()
    assert run.sync()["stuck"].ok


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("logd", "apscheduler")
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_the_daemon_shows_counts_and_survives_a_stuck_poll(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(daemon_module, "Engine", functools.partial(Engine, clock=clock))
    with (
        Stalling(tmp_path / "logd.db", lambda: None, records=150) as held,
        FleetITSimulator(records=30) as healthy,
    ):
        sources = [
            {
                **held.demo_source("held"),
                "interval": 3600,
                "timeout": 1,
                "poll_timeout": 60,
                "retry": {"attempts": 5, "max_wait": 0.1},
            },
            {**healthy.demo_source("fine"), "interval": 3600},
        ]
        config = write_config(tmp_path, sources)
        daemon = daemon_module.Daemon(config, notifier=_Recorder())
        daemon.start()
        try:
            store = daemon.store

            def state() -> dict[str, Any]:
                return {r["source"]: r for r in collect_status(store)}

            # While page 2 is held: the source is polling, since its poll started.
            wait_until(lambda: state().get("held", {}).get("entries") == 100, what="page 1")
            row = state()["held"]
            assert row["state"] == "polling" and row["polling_since"]
            out = StringIO()
            write_status(list(state().values()), "table", out)
            assert "polling since" in out.getvalue()
            assert daemon.metrics.registry.get_sample_value("logd_polls_running") >= 1
            # The other source polls meanwhile, on another worker.
            wait_until(lambda: state().get("fine", {}).get("state") == "ok", what="fine polled")
            # The deadline ends the held poll: failed, counted, the source free again.
            clock.jump()
            wait_until(lambda: state()["held"]["state"] == "failing", what="the deadline")
            assert "poll exceeded poll_timeout (1m)" in state()["held"]["last_error"]
            timeouts = daemon.metrics.registry.get_sample_value(
                "logd_poll_timeouts_total", {"source": "held"}
            )
            assert timeouts == 1
            assert daemon.heartbeat.healthy()  # it stopped: nothing to restart for
        finally:
            held.resume.set()
            daemon.shutdown()


def test_status_tells_a_running_poll_from_one_a_killed_process_left(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    with Store(tmp_path / "logd.db") as store:
        now = datetime.now(UTC).isoformat()
        for source, pid in (("live", os.getpid()), ("killed", int(dead.stdout))):
            store.db.execute(
                "INSERT INTO poll_runs (source, started, pid) VALUES (?, ?, ?)", [source, now, pid]
            )
        store.db.conn.commit()
        rows = {r["source"]: r for r in collect_status(store)}
    assert rows["live"]["state"] == "polling" and rows["live"]["polling_since"] == now
    assert rows["killed"]["state"] == "never polled" and rows["killed"]["polling_since"] is None
