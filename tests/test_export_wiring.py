"""`[[exports]]` wired into the commands: `logd sync` ends with a bounded export round,
`logd run` keeps every export following the change sequence; the OTLP kind is registered
through `register_sinks` like the webhook kind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.config.settings import load_settings
from logd.delivery.sinks.otlp_receiver import OtlpReceiver, attributes
from logd.delivery.wiring import wire_deliveries
from logd.plugin.manager import load_plugins
from logd.plugin.testing import write_config
from logd.store import open_store
from logd.store.interface import Filters


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def otlp(rx: OtlpReceiver, **extra: object) -> dict[str, object]:
    return {"kind": "otlp", "name": "otel", "endpoint": rx.endpoint, **extra}


def exported_ids(rx: OtlpReceiver) -> list[str]:
    return [str(attributes(record)["logd.native_id"]) for _, record in rx.records()]


def test_the_otlp_kind_is_registered_and_wired_as_a_follower(
    tmp_path: Path, rx: OtlpReceiver
) -> None:
    config = write_config(tmp_path, [], exports=[otlp(rx)])
    settings = load_settings(config)
    registry = load_plugins()
    assert {"webhook", "otlp"} <= set(registry.sink_kinds())
    with open_store(settings.database) as store:
        deliveries = wire_deliveries(settings, store, registry, holder="test:1")
        with deliveries:
            assert [f.name for f in deliveries.followers] == ["otel"]
            assert deliveries.sinks == [] and deliveries.deliverer is None


def test_sync_exports_every_stored_entry_once_and_the_next_sync_only_what_is_new(
    tmp_path: Path, rx: OtlpReceiver
) -> None:
    with FleetITSimulator(records=250) as sim:
        config = write_config(tmp_path, [sim.demo_source("fleet")], exports=[otlp(rx)])
        first = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert first.exit_code == 0, first.output
        assert "export otel: 250 exported, 0 rejected" in first.output
        ids = exported_ids(rx)
        assert len(ids) == 250 and len(set(ids)) == 250
        again = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert again.exit_code == 0 and "export otel: 0 exported, 0 rejected" in again.output
        sim.add_records(3)  # three new records at the vendor
        third = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert "export otel: 3 exported" in third.output, third.output
        assert len(exported_ids(rx)) == 253


def test_a_collector_that_asks_for_a_wait_leaves_the_rest_for_the_next_sync(
    tmp_path: Path, rx: OtlpReceiver
) -> None:
    with FleetITSimulator(records=20) as sim:
        config = write_config(tmp_path, [sim.demo_source("fleet")], exports=[otlp(rx)])
        rx.respond_with(503)
        first = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert first.exit_code == 0, first.output  # the poll succeeded; the export waits
        assert "export otel: 0 exported" in first.output and "stopped:" in first.output
        again = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert "export otel: 20 exported" in again.output, again.output


def test_logd_run_exports_what_each_poll_stores(
    tmp_path: Path, rx: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logd.daemon import service as daemon_module
    from logd.daemon.service import Daemon

    def no_exit(code: int) -> None:
        raise AssertionError("shutdown gave up waiting")

    monkeypatch.setattr(daemon_module.os, "_exit", no_exit)
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("logd", "apscheduler")
        for lg in [logging.getLogger(name)]
    }
    with FleetITSimulator(records=120) as sim:
        fleet = {**sim.demo_source("fleet"), "interval": 3600}
        config = write_config(tmp_path, [fleet], exports=[otlp(rx)])
        daemon = Daemon(config, shutdown_timeout=10)
        daemon.start()
        try:
            end = datetime.now(UTC) + timedelta(seconds=30)
            while len(set(exported_ids(rx))) < 120:
                assert datetime.now(UTC) < end, f"exported {len(exported_ids(rx))} of 120"
                threading.Event().wait(0.05)
            # A later poll's entries follow without waiting for the idle round.
            sim.add_records(2)
            daemon.scheduler.modify_job("poll:fleet", next_run_time=datetime.now(UTC))
            while len(set(exported_ids(rx))) < 122:
                assert datetime.now(UTC) < end, f"exported {len(exported_ids(rx))} of 122"
                threading.Event().wait(0.05)
            positions = daemon.store.sink_position("otel")
            assert positions == daemon.store.last_change()
        finally:
            daemon.shutdown()
            for name, (handlers, level, propagate) in saved.items():
                lg = logging.getLogger(name)
                lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_logd_run_killed_mid_export_loses_nothing_after_a_restart(
    tmp_path: Path, rx: OtlpReceiver
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    logd = Path(sys.executable).with_name("logd")
    with FleetITSimulator(records=2000) as sim:
        sim.latency = 0.1  # 20 pages: the export follows the backfill batch by batch
        fleet = {**sim.demo_source("fleet"), "interval": 3600}
        config = write_config(tmp_path, [fleet], exports=[otlp(rx, batch_size=100)])

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [str(logd), "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        first = start()
        try:
            deadline = time.monotonic() + 30
            while len(exported_ids(rx)) < 300:
                assert time.monotonic() < deadline, "nothing exported"
                time.sleep(0.02)
            os.kill(first.pid, signal.SIGKILL)  # mid-backfill, mid-export
            first.wait()
            assert len(set(exported_ids(rx))) < 2000, "the export ended before the kill"
            second = start()
            try:
                deadline = time.monotonic() + 60
                while len(set(exported_ids(rx))) < 2000:
                    assert time.monotonic() < deadline, f"{len(set(exported_ids(rx)))} of 2000"
                    time.sleep(0.05)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
    # At least once: every stored entry reached the collector; a repeat is the batch the kill
    # cut short, sent again from the position.
    with open_store(load_settings(config).database) as store:
        stored = {r.native_id for r in store.search(Filters(), limit=None)}
    assert stored == set(exported_ids(rx)) and len(stored) == 2000
