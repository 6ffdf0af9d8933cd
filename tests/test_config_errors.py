"""What an operator gets wrong in a config file: each mistake is one line per problem, every
problem in one run, on every command and on the daemon's reload; never a traceback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.config.settings import load_settings
from logd.errors import ConfigError
from logd.plugin.manager import load_plugins
from logd.plugin.testing import write_config

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 20.0
FLEET = 'name = "fleet"\nprovider = "fleetit"\ntoken = { env = "FLEET_TOKEN" }\n'


def wait_until(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def run_logd(*args: str, env: dict[str, str] | None = None) -> Result:
    """In-process, except `logd run`, which needs real stdio (faulthandler) and signals."""
    if args[0] != "run":
        return invoke(*args, env=env)
    proc = subprocess.run(
        [sys.executable, "-m", "logd", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **(env or {})},
    )
    return Result(
        runner=CliRunner(),
        stdout_bytes=proc.stdout.encode(),
        stderr_bytes=proc.stderr.encode(),
        output_bytes=(proc.stdout + proc.stderr).encode(),
        return_value=None,
        exit_code=proc.returncode,
        exception=None,
    )


def one_line_error(result: Result, *needles: str) -> str:
    """The result is exit 2 with a single `error:` line holding every needle, no traceback."""
    assert result.exit_code == 2, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    ), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output
    return errors[0]


def config_problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


# -- case 7: a file that is not plain UTF-8 TOML ---------------------------------------------


def _latin1(path: Path) -> None:
    path.write_bytes(b"# caf\xe9 config\n[[sources]]\n" + FLEET.encode())


def _utf16(path: Path) -> None:
    path.write_text("[[sources]]\n" + FLEET, encoding="utf-16")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.mkdir()


def _unreadable(path: Path) -> None:
    path.write_text("[[sources]]\n" + FLEET)
    path.chmod(0)


UNREADABLE = {
    "latin-1 byte": (_latin1, "line 1, column 6 (byte 5)"),
    "utf-16": (_utf16, "UTF-16"),
    "empty": (_empty, "is empty"),
    "directory": (_directory, "is a directory"),
    "no permission": (_unreadable, "Permission denied"),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
@pytest.mark.parametrize("command", ["check-config", "sync", "query", "status", "run"])
def test_an_unreadable_config_is_one_line_on_every_command(
    tmp_path: Path, kind: str, command: str
) -> None:
    make, needle = UNREADABLE[kind]
    path = tmp_path / "config.toml"
    make(path)
    # Through $LOGD_CONFIG: `-c` is checked by click first (a directory is a usage error).
    env = {"FLEET_TOKEN": "t", "LOGD_CONFIG": str(path)}
    if kind == "no permission" and os.geteuid() == 0:
        # root reads any file: run as nobody, who may not even enter pytest's directory.
        if shutil.which("setpriv") is None:
            pytest.skip("root reads any file, and there is no setpriv to drop that")
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        done = subprocess.run(
            [*nobody, sys.executable, "-m", "logd", command],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env={**os.environ, **env},
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"error: cannot read config file {path}: {needle}"]
        return
    one_line_error(run_logd(command, env=env), str(path), needle)


def test_a_utf8_bom_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_TOKEN", "t")
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[[sources]]\n" + FLEET.encode())
    assert load_settings(path).source("fleet").provider == "fleetit"


def test_the_byte_is_named_by_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'database = "x.db"\n\n[[sources]]  # \xff\n')
    with pytest.raises(ConfigError, match=r"line 3, column 16 \(byte 34\): byte 0xff is not UTF-8"):
        load_settings(path)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    import logging

    saved = {n: logging.getLogger(n).handlers[:] for n in ("logd", "apscheduler")}
    levels = {n: logging.getLogger(n).level for n in saved}
    yield
    for name, handlers in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).setLevel(levels[name])


def test_reload_keeps_the_running_config_whatever_fails(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logd.daemon import service as daemon_module
    from logd.daemon.service import Daemon, poll_job_id

    with FleetITSimulator(records=3) as sim:
        config = write_config(tmp_path, [{**sim.demo_source("a"), "interval": 600}])
        daemon = Daemon(config)
        daemon.start()
        try:
            good = config.read_bytes()
            for breaks in (_latin1, _utf16, _empty):
                breaks(config)
                assert not daemon.reload(), breaks
                assert daemon.scheduler.get_job(poll_job_id("a")) is not None
            config.unlink()
            _directory(config)
            assert not daemon.reload()
            config.rmdir()
            # No enabled source: refused like at start, the running sources kept.
            write_config(tmp_path, [{**sim.demo_source("a"), "enabled": False}])
            assert not daemon.reload()
            assert daemon.scheduler.get_job(poll_job_id("a")) is not None

            # Not only logd's own errors: anything raised while loading keeps the config.
            def crash(*args: object, **kwargs: object) -> None:
                raise RuntimeError("a bug in a validator")

            monkeypatch.setattr(daemon_module, "load_settings", crash)
            assert not daemon.reload()
            monkeypatch.undo()
            config.write_bytes(good)
            assert daemon.reload()
        finally:
            daemon.shutdown()


# -- every problem at once ---------------------------------------------------------------------


def test_three_typos_in_three_tables_are_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'databse = "x.db"\n[[sources]]\nname = "fleet"\nprovider = "fleetit"\ntoken = "t"\n'
        'intervall = "5m"\nfleet_idd = "1"\nretry = { atempts = 2 }\n'
        '[[webhooks]]\nname = "ops"\nurl = "https://h.example/x"\nsecret = "s"\nmax_entrys = 3\n'
    )
    result = invoke("check-config", "-c", str(path))
    assert result.exit_code == 2
    for line in (
        "databse: unknown key; did you mean `database`?",
        "sources[0].intervall: unknown key; did you mean `interval`?",
        "sources[0].fleet_idd: unknown key; did you mean `fleet_id`?",
        "sources[0].retry.atempts: unknown key; did you mean `attempts`?",
        "webhooks[0].max_entrys: unknown key; did you mean `max_entries`?",
    ):
        assert f"error: {path}: {line}" in result.output, result.output


def test_the_copied_example_reports_every_missing_secret_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    shutil.copy(REPO / "config.example.toml", path)
    result = invoke("check-config", "-c", str(path))
    assert result.exit_code == 2
    missing = re.findall(r"environment variable (\w+) is not set", result.output)
    assert sorted(missing) == sorted(
        [
            "FLEETIT_TOKEN",
            "PEGASUS_PASSWORD",
            "EP_CLIENT_ID",
            "EP_CLIENT_SECRET",
            "MAESTRA_SECRET_KEY",
            "AKINON_USERNAME",
            "AKINON_PASSWORD",
            "EVENTS_API_KEY",
            "LOGD_OPS_SECRET",
            "LOGD_OTLP_KEY",
        ]
    ), result.output


def test_a_webhook_problem_is_reported_beside_a_source_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[sources]]\nname = "fleet"\nprovider = "fleetit"\ninterval = "soon"\ntoken = "t"\n'
        '[[webhooks]]\nname = "ops"\nurl = "ftp://h"\nsecret = "s"\nsources = ["nope"]\n'
    )
    message = config_problem(path)
    assert "sources[0].interval" in message
    assert "webhooks[0].url" in message and "webhooks[0].sources" in message


def _simulated_sources() -> list[tuple[str, dict[str, Any]]]:
    """Each installed provider's demo table (its simulator started only to know its URL)."""
    tables = []
    for name, cls in sorted(load_plugins().simulators.items()):
        with cls() as sim:
            tables.append((name, sim.demo_source(f"s-{name}")))
    return tables


@pytest.mark.parametrize("bad", ["127.0.0.1:33495", "htp://x", "http://", "https://h:port"])
def test_every_providers_base_url_is_checked_at_load_time(tmp_path: Path, bad: str) -> None:
    sources = _simulated_sources()
    assert len(sources) >= 5
    path = write_config(tmp_path, [{**table, "base_url": bad} for _, table in sources])
    message = config_problem(path)
    for i in range(len(sources)):
        assert f"sources[{i}].base_url: {bad!r} is not" in message, message


@pytest.mark.parametrize("command", ["query", "status", "stats", "check-config", "sync"])
def test_an_invalid_log_level_variable_is_one_line(tmp_path: Path, command: str) -> None:
    result = invoke(command, "-c", str(tmp_path / "x.toml"), env={"LOGD_LOG_LEVEL": "verbose"})
    one_line_error(result, "LOGD_LOG_LEVEL='verbose'", "debug, info, warning, error")


def test_a_config_named_by_the_variable_must_exist() -> None:
    result = invoke("query", "x", env={"LOGD_CONFIG": "/nonexistent/logd.toml"})
    one_line_error(result, "config file /nonexistent/logd.toml (from $LOGD_CONFIG) not found")


def test_check_config_reads_credentials_as_the_unit_will(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "fleet-token").write_text("from-the-credential-file\n")
    path = tmp_path / "config.toml"
    path.write_text(
        FLEET.replace(
            '{ env = "FLEET_TOKEN" }', '{ file = "${CREDENTIALS_DIRECTORY}/fleet-token" }'
        ).join(["[[sources]]\n", ""])
    )
    ok = invoke("check-config", "-c", str(path), "--credentials-dir", str(creds))
    assert ok.exit_code == 0, ok.output
    assert "from-the-credential-file" not in ok.output

    # The default is install-service's directory; the error says how to name another.
    result = invoke("check-config", "-c", str(path))
    one_line_error(result, "/etc/logd/credentials/fleet-token", "--credentials-dir")
    # Outside check-config the variable is simply unset: the error names the option too.
    result = invoke("sync", "-c", str(path))
    one_line_error(result, "${CREDENTIALS_DIRECTORY}, which is not set", "--credentials-dir")


# -- a literal secret in a file others can read ------------------------------------------------


def test_a_literal_secret_in_a_world_readable_file_is_warned_about(tmp_path: Path) -> None:
    with FleetITSimulator(records=2) as sim:
        table = sim.demo_source("fleet")
        secret = table["token"]
        path = write_config(tmp_path, [table])
        path.chmod(0o644)
        warning = f"warning: {path} is readable by other users (mode 0644)"
        for command in ("check-config", "sync"):
            result = invoke(command, "-c", str(path))
            assert result.exit_code == 0, result.output
            assert warning in result.output and f"chmod 600 {path}" in result.output
            assert "sources[0].token" in result.output
            assert secret not in result.output

        path.chmod(0o600)
        assert "warning" not in invoke("check-config", "-c", str(path)).output
        # The same file readable by all but with the secret in the environment: no warning.
        path.write_text(path.read_text().replace(f'"{secret}"', '{ env = "FLEET_T" }'))
        path.chmod(0o644)
        result = invoke("check-config", "-c", str(path), env={"FLEET_T": "x"})
        assert result.exit_code == 0 and "warning" not in result.output, result.output


# -- the daemon: one per database, never with nothing to poll ----------------------------------


class RunProc:
    """`python -m logd run -c CONFIG`, stderr in a file."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.with_name(f"run-{time.monotonic_ns()}.log")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "logd", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str) -> None:
        wait_until(lambda: text in self.log(), what=f"{text!r} in\n{self.log()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def test_a_second_daemon_on_one_database_is_refused_naming_the_pid(tmp_path: Path) -> None:
    with FleetITSimulator(records=2) as sim:
        table = {**sim.demo_source("fleet"), "interval": 600, "token": "lit3ral-s3cret"}
        config = write_config(tmp_path, [table])
        config.chmod(0o644)
        first = RunProc(config)
        try:
            first.wait_log("started: polling 1 sources")
            # The warning reaches the daemon's log (the journal) too, without the secret.
            assert "readable by other users (mode 0644)" in first.log()
            assert "lit3ral-s3cret" not in first.log()
            lock = tmp_path / "logd.db.lock"
            assert lock.stat().st_mode & 0o777 == 0o600

            second = subprocess.run(
                [sys.executable, "-m", "logd", "run", "-c", str(config)],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
            )
            assert second.returncode == 2, second.stderr
            assert f"another `logd run` (PID {first.proc.pid}) is already using" in second.stderr
            assert "Traceback" not in second.stderr

            # A Latin-1 byte, then SIGHUP: logged, the daemon keeps running its config.
            config.write_bytes(b"# caf\xe9\n" + config.read_bytes())
            first.proc.send_signal(signal.SIGHUP)
            first.wait_log("reload failed; keeping the running config")
            assert "line 1, column 6 (byte 5)" in first.log()
            assert first.proc.poll() is None
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(DEADLINE) == 0
        finally:
            first.close()
        # The lock went with the daemon: the next one may take it.
        from logd.daemon.instance_lock import InstanceLock

        lock = InstanceLock(tmp_path / "logd.db")
        lock.acquire()
        lock.release()


def test_run_with_no_enabled_source_is_refused_like_sync(tmp_path: Path) -> None:
    with FleetITSimulator(records=1) as sim:
        path = write_config(tmp_path, [{**sim.demo_source("fleet"), "enabled": False}])
        for command in ("run", "sync"):
            one_line_error(run_logd(command, "-c", str(path)), "no enabled sources")


# -- any bytes at all ----------------------------------------------------------------------------

_VALUES = [
    "1",
    "-1",
    "0",
    "1e400",
    "nan",
    "true",
    '""',
    '"x"',
    '"\\u0000"',
    "[]",
    "[1, [2]]",
    "{}",
    '{ env = "NOPE" }',
    '{ file = "/" }',
    '{ file = "${X}" }',
    "{ env = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    '"htp://x"',
    '"5m"',
    '"-5m"',
    '"999999999d"',
]


def _mutations(seed: int, base: bytes) -> Iterator[bytes]:
    """Seeded mutations of a valid config: byte edits, cut files, and keys given odd values."""
    import random

    rng = random.Random(seed)
    lines = base.split(b"\n")
    for _ in range(300):
        kind = rng.randrange(4)
        if kind == 0:  # a random byte somewhere
            data = bytearray(base)
            data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        elif kind == 1:  # cut short
            yield base[: rng.randrange(len(base))]
        else:  # one assignment gets another value
            out = list(lines)
            i = rng.randrange(len(out))
            key, sep, _ = out[i].partition(b"=")
            if sep and not key.lstrip().startswith(b"#"):
                out[i] = key + b"= " + rng.choice(_VALUES).encode()
            yield b"\n".join(out)


def test_any_mutation_of_the_example_is_a_config_or_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = (REPO / "config.example.toml").read_bytes()
    for var in re.findall(rb'env = "(\w+)"', example):
        name = var.decode()
        monkeypatch.setenv(name, "d2hzZWNfZXhhbXBsZQ==" if "SECRET" in name else "value")
    path = tmp_path / "config.toml"
    outcomes = {"ok": 0, "error": 0}
    for data in _mutations(17, example):
        path.write_bytes(data)
        try:
            load_settings(path)
        except ConfigError as exc:
            outcomes["error"] += 1
            # One line per problem, each naming the file; never another exception.
            assert all(str(path) in line for line in str(exc).split("\n")), str(exc)
        else:
            outcomes["ok"] += 1
    assert outcomes["error"] > 50 and outcomes["ok"] > 10, outcomes
