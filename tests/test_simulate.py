"""`logd simulate`: the simulators on fixed ports and a config that `logd sync` takes as is."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from logd.cli.main import cli
from logd.cli.simulate import END_MARK
from logd.plugin.manager import load_plugins

DEADLINE = 30.0


def _read_config(proc: subprocess.Popen[str]) -> str:
    """The config printed on stdout, up to its end mark (read on a thread, with a deadline)."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line == END_MARK:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(DEADLINE) or not lines or lines[-1] != END_MARK:
        proc.kill()
        pytest.fail(f"no config from logd simulate: {''.join(lines)}")
    return "".join(lines)


def _simulate(*args: str) -> tuple[subprocess.Popen[str], str, int]:
    """Start `logd simulate` on a free port range; return it, its config and the port base."""
    for _ in range(5):  # other test runs may hold ports: try another base, not another luck
        base = random.randrange(20_000, 60_000)
        proc = subprocess.Popen(
            [sys.executable, "-m", "logd", "simulate", *args, "--port-base", str(base)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("LOGD_")},
        )
        try:
            return proc, _read_config(proc), base
        except pytest.fail.Exception:
            _, err = proc.communicate(timeout=DEADLINE)
            if "cannot listen" not in err:
                raise
    pytest.fail("no free port range in 5 tries")


def test_simulate_serves_every_simulator_on_fixed_ports_and_sync_takes_its_config(
    tmp_path: Path,
) -> None:
    proc, text, base = _simulate()
    try:
        config = tomllib.loads(text)
        installed = sorted(load_plugins().simulators)
        assert [s["name"] for s in config["sources"]] == installed
        for i, src in enumerate(config["sources"]):
            assert src["base_url"].startswith(f"http://127.0.0.1:{base + i}")
        path = tmp_path / "sim.toml"
        path.write_text(text)
        path.chmod(0o600)
        sync = subprocess.run(
            [sys.executable, "-m", "logd", "sync", "-q", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sync.returncode == 0, sync.stdout + sync.stderr
        for name in installed:
            assert f"{name}: " in sync.stdout and "error" not in sync.stdout, sync.stdout
        assert (tmp_path / "logd-simulate.db").exists()  # beside the config
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEADLINE) == 0


def test_one_named_provider_keeps_its_port_and_the_config_can_go_to_a_file(
    tmp_path: Path,
) -> None:
    installed = sorted(load_plugins().simulators)
    out = tmp_path / "conf" / "sim.toml"
    for _ in range(5):
        base = random.randrange(20_000, 60_000)
        args = ["fleetit", "--port-base", str(base), "--config-out", str(out)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "logd", "simulate", *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        err = ""
        for line in proc.stderr:
            err += line
            if "ready" in line or "cannot listen" in line:
                break
        if "ready" in err:
            break
        proc.wait(DEADLINE)
    else:
        pytest.fail("no free port range in 5 tries")
    try:
        config = tomllib.loads(out.read_text())
        assert out.stat().st_mode & 0o777 == 0o600  # literal credentials
        [src] = config["sources"]
        assert src["base_url"].startswith(f"http://127.0.0.1:{base + installed.index('fleetit')}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0


def test_an_unknown_provider_is_exit_2_listing_the_installed() -> None:
    result = CliRunner().invoke(cli, ["simulate", "nope"])
    assert result.exit_code == 2
    assert "no simulator for provider 'nope'; installed: " in result.output
    assert "fleetit" in result.output


def test_tick_grows_each_simulator_between_polls() -> None:
    from logd_fleetit import FleetITSimulator

    from logd.cli.simulate import produce

    with FleetITSimulator(records=3) as sim:
        stop = threading.Event()
        produce({"fleetit": sim}, 0.05, stop)
        try:
            end = time.monotonic() + DEADLINE
            while sum(len(f.records) for f in sim.fleets.values()) <= 3:
                assert time.monotonic() < end, "no tick within the deadline"
                time.sleep(0.02)
        finally:
            stop.set()
