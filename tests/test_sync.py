"""`logd sync` end to end against the FleetIT simulator: retries, errors, crashes, secrets."""

from __future__ import annotations

import gc
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from delivery_env import ENGINE_STORES, engine_store
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.engine import heap
from logd.plugin.testing import SyncRun, write_config
from logd.store.interface import BatchResult, BatchTransaction

TOKEN = "fleet-demo-token"


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=250) as s:
        yield s


def fast(source: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    return {**source, "retry": {"attempts": attempts, "max_wait": 0.01}}


def test_sync_command_reports_and_exits_0(tmp_path: Path, sim: FleetITSimulator) -> None:
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    result = CliRunner().invoke(cli, ["sync", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "fleet: 3 pages, 250 new, 0 updated" in result.output
    again = CliRunner().invoke(cli, ["sync", "-c", str(config), "--source", "fleet"])
    assert again.exit_code == 0 and "fleet: 1 pages, 0 new, 0 updated" in again.output


@pytest.mark.parametrize("store", ENGINE_STORES)
def test_429_with_retry_after_and_a_500_are_retried(
    tmp_path: Path, sim: FleetITSimulator, store: str
) -> None:
    sim.fail_next(429, headers={"Retry-After": "3"}, body='{"detail": "Request was throttled."}')
    sim.fail_next(500, body="<h1>Server Error (500)</h1>")
    run = SyncRun(tmp_path, [sim.demo_source("fleet")], store=engine_store(store))
    report = run.sync()["fleet"]
    assert report.ok, report.error
    assert report.new == 250 and report.retries == 2
    assert run.waits[0] == 3.0  # Retry-After honoured
    assert len(sim.requests) == 5  # 3 pages + 2 retried answers


def test_exhausted_retries_exit_1_with_the_vendor_text_and_the_rest_stored(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    with FleetITSimulator(records=10) as broken:
        broken.fail_next(503, body='{"detail": "Service temporarily unavailable."}', times=100)
        config = write_config(
            tmp_path, [fast(sim.demo_source("fleet")), fast(broken.demo_source("down"))]
        )
        result = CliRunner().invoke(cli, ["sync", "-c", str(config)])
    assert result.exit_code == 1
    assert "fleet: 3 pages, 250 new" in result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("error: down:")]
    assert "HTTP 503" in line and "Service temporarily unavailable." in line
    assert "gave up after 3 attempts" in line and "127.0.0.1" in line
    assert "Traceback" not in result.output
    status = CliRunner().invoke(cli, ["status", "-c", str(config), "--format", "json"])
    assert (
        '"state": "failing"' in status.output and "Service temporarily unavailable" in status.output
    )


def test_invalid_json_is_a_clear_error(tmp_path: Path, sim: FleetITSimulator) -> None:
    sim.fail_next(200, body=b"{'results': oops")
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    result = CliRunner().invoke(cli, ["sync", "-c", str(config)])
    assert result.exit_code == 1
    assert "invalid JSON from GET" in result.output and "Traceback" not in result.output


def test_unknown_source_and_bad_config_exit_2(tmp_path: Path, sim: FleetITSimulator) -> None:
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    result = CliRunner().invoke(cli, ["sync", "-c", str(config), "--source", "nope"])
    assert result.exit_code == 2 and "no source named 'nope'" in result.output


@pytest.mark.parametrize("store", ENGINE_STORES)
def test_a_crash_inside_the_second_batch_keeps_the_first(
    tmp_path: Path, sim: FleetITSimulator, store: str
) -> None:
    calls = []

    def crash_on_second(tx: BatchTransaction, result: BatchResult) -> None:
        calls.append(tx.source)
        if len(calls) == 2:
            raise RuntimeError("power cut")

    run = SyncRun(
        tmp_path,
        [sim.demo_source("fleet")],
        batch_hooks=[crash_on_second],
        store=engine_store(store),
    )
    report = run.sync()["fleet"]
    assert report.error is not None and "power cut" in report.error
    assert run.count() == 100  # the first page, committed with its cursor
    assert run.cursor("fleet") == {"watermark": None}

    calls.clear()
    run.engine.batch_hooks = []
    assert run.sync()["fleet"].ok
    assert run.count() == 250
    assert {r.native_id for r in run.rows()} == {str(r["id"]) for r in sim.fleets["1"].records}


def test_killed_mid_sync_loses_nothing(tmp_path: Path, sim: FleetITSimulator) -> None:
    sim.latency = 0.4  # time to kill the process between two pages
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "logd", "sync", "-q", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "logd.db"
    deadline = time.monotonic() + 20
    stored = 0
    while time.monotonic() < deadline and stored == 0:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    stored = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            except sqlite3.OperationalError:
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert 0 < stored < 250

    sim.latency = 0
    run = SyncRun(tmp_path / "again", [sim.demo_source("fleet")], database=str(db))
    assert run.sync()["fleet"].ok
    assert run.count() == 250


def test_secrets_never_appear_in_output(tmp_path: Path, sim: FleetITSimulator) -> None:
    secret = "super-secret-token-value"
    sim.token = secret
    good = sim.demo_source("fleet")
    bad = {**sim.demo_source("bad"), "token": "wrong-secret-value-42"}
    config = write_config(tmp_path, [fast(good), fast(bad)], log_level="debug")
    runner = CliRunner()
    outputs = [
        runner.invoke(cli, ["--log-level", "debug", "sync", "-c", str(config)]).output,
        runner.invoke(cli, ["check-config", "-c", str(config)]).output,
        runner.invoke(cli, ["status", "-c", str(config), "--format", "json"]).output,
        runner.invoke(cli, ["status", "-c", str(config)]).output,
        runner.invoke(cli, ["query", "-c", str(config), "--format", "json", "--limit", "0"]).output,
    ]
    assert "Invalid token." in outputs[0]
    for output in outputs:
        assert secret not in output and "wrong-secret-value-42" not in output


def test_an_unwritable_database_is_a_one_line_error(tmp_path: Path, sim: FleetITSimulator) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path, [sim.demo_source("fleet")], database=str(blocker / "x.db"))
    result = CliRunner().invoke(cli, ["sync", "-c", str(config)])
    assert result.exit_code == 1
    assert "cannot create the database" in result.output and "Traceback" not in result.output


def test_ctrl_c_stops_polls_after_their_batch(tmp_path: Path, sim: FleetITSimulator) -> None:
    sim.latency = 1.5  # three pages take 4.5 s: ample time to interrupt after the first
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "logd", "sync", "-q", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background inherits an ignored SIGINT; Ctrl-C needs it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(sim.requests) < 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "interrupted: every batch committed so far is kept" in err
    assert "Traceback" not in err
    assert len(sim.requests) < 3  # it did not walk on to the last page


def test_a_terminal_gets_live_progress_and_the_same_summary(
    tmp_path: Path, sim: FleetITSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from logd.cli.sync import run_sync
    from logd.config.settings import load_settings

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    settings = load_settings(write_config(tmp_path, [sim.demo_source("fleet")]))
    [report] = run_sync(settings)
    assert report.ok and report.new == 250 and report.total == 250
    assert "fleet" in terminal.getvalue()  # rich drew its progress there
    assert run_sync(settings, quiet=True)[0].new == 0


@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_sync_freezes_start_up_objects_and_collects_in_larger_rounds(
    tmp_path: Path, sim: FleetITSimulator, gc_restored: None
) -> None:
    # heap.py: with CPython's defaults the collector took 0.4-0.7 s of a 100k backfill.
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    config = write_config(tmp_path, [sim.demo_source("fleet")])
    assert CliRunner().invoke(cli, ["sync", "-c", str(config)]).exit_code == 0
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0
