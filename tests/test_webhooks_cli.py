"""Webhooks from the command line: config checks, `logd sync` end to end, status, the
`logd webhooks` commands, and secrets never printed."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.delivery.receiver import Receiver
from logd.plugin.testing import write_config

SECRET = "ops-hook-secret-do-not-print"
TOKEN = "fleet-token-do-not-print"


def run(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def out(result: Result) -> str:
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=60, token=TOKEN) as s:
        yield s


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver(SECRET) as receiver:
        yield receiver


def fleet(sim: FleetITSimulator) -> dict[str, Any]:
    return {**sim.demo_source("fleet"), "retry": {"attempts": 2, "max_wait": 0.01}}


def config_with(tmp_path: Path, webhook: dict[str, Any], sources: list[dict[str, Any]]) -> Path:
    # Most tests here deliver what a first sync finds, which is a backfill: opt in.
    hook = {"name": "ops", "secret": SECRET, "alert_backfill": True, **webhook}
    return write_config(tmp_path, sources, webhooks=[hook])


OFFLINE = {"name": "fleet", "provider": "fleetit", "base_url": "http://127.0.0.1:9", "token": "t"}


# -- check-config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/logd", "http://10.0.0.5/hook", "ftp://hooks.example.com/"]
)
def test_check_config_rejects_plain_http_to_a_non_loopback_host(tmp_path: Path, url: str) -> None:
    result = run("check-config", "-c", str(config_with(tmp_path, {"url": url}, [OFFLINE])))
    assert result.exit_code == 2
    assert "webhooks[0].url" in out(result)
    assert SECRET not in out(result)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("https://hooks.example.com/logd", {}),
        ("http://127.0.0.1:8080/hook", {}),
        ("http://127.8.9.10/hook", {}),
        ("http://[::1]:8080/hook", {}),
        ("http://localhost/hook", {}),
        ("http://hooks.internal/logd", {"allow_insecure": True}),
    ],
)
def test_check_config_accepts_https_loopback_or_allow_insecure(
    tmp_path: Path, url: str, extra: dict[str, Any]
) -> None:
    result = run("check-config", "-c", str(config_with(tmp_path, {"url": url, **extra}, [OFFLINE])))
    assert result.exit_code == 0, out(result)
    assert "webhook ops: fleetit-signed to http" in result.output
    assert SECRET not in out(result)


def test_check_config_shows_a_webhook_without_its_url_path(tmp_path: Path) -> None:
    url = "https://hooks.example.com/services/T0KEN-IN-PATH"
    result = run("check-config", "-c", str(config_with(tmp_path, {"url": url}, [OFFLINE])))
    assert "webhook ops: fleetit-signed to https://hooks.example.com" in result.output
    assert "T0KEN" not in out(result) and SECRET not in out(result)


@pytest.mark.parametrize(
    ("webhook", "key"),
    [
        ({"sources": ["nope"]}, "webhooks[0].sources"),
        ({"match": "timeout AND"}, "webhooks[0].match"),
        ({"signature": "standard-webhooks"}, "webhooks[0].secret"),  # not base64 whsec_
        ({"signature": "hmac-md5"}, "webhooks[0].signature"),
        ({"headers": {"X-Signature": "x"}}, "webhooks[0].headers"),
        ({"max_entries": 0}, "webhooks[0].max_entries"),
        ({"surprise": 1}, "webhooks[0].surprise"),
    ],
)
def test_check_config_names_the_webhook_key(
    tmp_path: Path, webhook: dict[str, Any], key: str
) -> None:
    path = config_with(tmp_path, {"url": "https://h.example/", **webhook}, [OFFLINE])
    result = run("check-config", "-c", str(path))
    assert result.exit_code == 2
    assert key in out(result)
    assert SECRET not in out(result)


def test_duplicate_webhook_names_are_a_config_error(tmp_path: Path) -> None:
    hook = {"name": "ops", "url": "https://h.example/", "secret": SECRET}
    path = write_config(tmp_path, [OFFLINE], webhooks=[hook, hook])
    result = run("check-config", "-c", str(path))
    assert result.exit_code == 2 and "webhooks[1].name" in out(result)


# -- sync, status and the webhooks commands ------------------------------------------------------


def test_sync_delivers_new_failures_once_and_never_prints_secrets(
    tmp_path: Path, sim: FleetITSimulator, rx: Receiver
) -> None:
    config = str(config_with(tmp_path, {"url": rx.url}, [fleet(sim)]))
    outputs = []

    first = run("sync", "-c", config)
    outputs.append(out(first))
    assert first.exit_code == 0, out(first)
    assert "webhook ops: 1 delivered, 0 retrying, 0 dead" in first.output
    [got] = rx.received
    assert got.verified
    failures = run("query", "-c", config, "--failed", "--limit", "0", "--format", "json")
    stored = {e["id"] for e in json.loads(failures.output)}
    assert stored and {e["id"] for e in got.json()["entries"]} == stored

    again = run("sync", "-c", config)
    outputs.append(out(again))
    assert "webhook ops: 0 delivered" in again.output and len(rx.received) == 1

    sim.add_records(3, failure_rate=1.0)
    third = run("sync", "-c", config)
    outputs.append(out(third))
    assert "webhook ops: 1 delivered" in third.output
    assert rx.received[-1].json()["count"] == 3

    status = run("status", "-c", config, "--format", "json")
    outputs.append(out(status))
    assert json.loads(status.output)[0]["webhooks"] == {"pending": 0, "dead": 0}
    outputs.append(out(run("status", "-c", config)))
    assert "hooks pending/dead" in outputs[-1]

    listed = run("webhooks", "list", "-c", config, "--format", "json")
    outputs.append(out(listed))
    assert [r["state"] for r in json.loads(listed.output)] == ["done", "done"]
    outputs.append(out(run("webhooks", "list", "-c", config)))

    test = run("webhooks", "test", "ops", "-c", config)
    outputs.append(out(test))
    assert test.exit_code == 0 and "delivered" in test.output
    assert rx.received[-1].verified and rx.received[-1].json()["source"] == "logd-test"

    for text in outputs:
        assert SECRET not in text and TOKEN not in text


def test_status_and_list_show_dead_deliveries_and_retry_delivers_them(
    tmp_path: Path, sim: FleetITSimulator, rx: Receiver
) -> None:
    config = str(config_with(tmp_path, {"url": rx.url}, [fleet(sim)]))
    rx.respond_with((422, {}, "schema mismatch: entries"))
    assert "webhook ops: 0 delivered, 0 retrying, 1 dead" in run("sync", "-c", config).output

    status = json.loads(run("status", "-c", config, "--format", "json").output)
    assert status[0]["webhooks"] == {"pending": 0, "dead": 1}
    dead = json.loads(run("webhooks", "list", "-c", config, "--state", "dead", "-f", "json").output)
    assert len(dead) == 1 and "schema mismatch" in dead[0]["last_error"]
    db = str(tmp_path / "logd.db")
    assert json.loads(run("webhooks", "list", "--db", db, "-f", "json").output) == dead

    nothing = run("webhooks", "retry", "-c", config)  # unnamed: pending only, dead stay dead
    assert nothing.exit_code == 0 and "nothing to deliver" in nothing.output
    retried = run("webhooks", "retry", dead[0]["delivery_id"], "-c", config)
    assert retried.exit_code == 0, out(retried)
    assert f"{dead[0]['delivery_id']} (ops): delivered" in retried.output
    assert rx.received[-1].delivery_id == dead[0]["delivery_id"] and len(rx.received) == 2
    assert SECRET not in out(retried)

    unknown = run("webhooks", "retry", "dlv_nope", "-c", config)
    assert unknown.exit_code == 1 and "dlv_nope" in out(unknown)


def test_webhooks_test_reports_a_failing_endpoint(tmp_path: Path, rx: Receiver) -> None:
    config = str(config_with(tmp_path, {"url": rx.url}, [OFFLINE]))
    rx.respond_with((500, {}, "boom"))
    result = run("webhooks", "test", "ops", "-c", config)
    assert result.exit_code == 1 and "HTTP 500: boom" in out(result)
    assert SECRET not in out(result)
    missing = run("webhooks", "test", "nope", "-c", config)
    assert missing.exit_code == 2 and "ops" in out(missing)


# -- verify ---------------------------------------------------------------------------------


def test_verify_command_fleetit(rx: Receiver, tmp_path: Path) -> None:
    config = str(config_with(tmp_path, {"url": rx.url}, [OFFLINE]))
    assert run("webhooks", "test", "ops", "-c", config).exit_code == 0
    got = rx.received[-1]
    args = [
        "webhooks",
        "verify",
        "--secret",
        SECRET,
        "--timestamp",
        got.headers["x-timestamp"],
        "--signature",
        got.headers["x-signature"],
    ]
    assert run(*args, stdin=got.body).exit_code == 0
    assert run(*args, stdin=got.body.replace(b"sample", b"simple")).exit_code == 1
    assert run(*args[:-1], "0" * 64, stdin=got.body).exit_code == 1


def test_verify_command_standard_webhooks(tmp_path: Path) -> None:
    whsec = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    with Receiver(whsec, scheme="standard-webhooks") as rx:
        hook = {"url": rx.url, "secret": whsec, "signature": "standard-webhooks"}
        config = str(config_with(tmp_path, hook, [OFFLINE]))
        assert run("webhooks", "test", "ops", "-c", config).exit_code == 0
        got = rx.received[-1]
    args = [
        "webhooks",
        "verify",
        "--scheme",
        "standard-webhooks",
        "--secret",
        whsec,
        "--timestamp",
        got.headers["webhook-timestamp"],
        "--signature",
        got.headers["webhook-signature"],
    ]
    assert run(*args, "--id", got.headers["webhook-id"], stdin=got.body).exit_code == 0
    assert run(*args, "--id", "msg_other", stdin=got.body).exit_code == 1
    assert run(*args, stdin=got.body).exit_code == 2  # --id is required for this scheme


def test_custom_header_values_are_secrets(tmp_path: Path) -> None:
    from logd.config.settings import load_settings
    from logd.plugin.testing import write_config

    hook = {
        "name": "ops",
        "url": "https://hooks.example.com/x",
        "secret": "s",
        "headers": {"Authorization": "Bearer header-token-777", "X-Key": {"env": "NOPE_NOT_SET"}},
    }
    bad = CliRunner().invoke(
        cli, ["check-config", "-c", str(write_config(tmp_path, [], webhooks=[hook]))]
    )
    assert bad.exit_code == 2 and "webhooks[0].headers.X-Key" in bad.output
    del hook["headers"]["X-Key"]  # type: ignore[attr-defined]
    settings = load_settings(write_config(tmp_path, [], webhooks=[hook]))
    assert "header-token-777" not in repr(settings) and "header-token-777" not in str(settings)
    shown = CliRunner().invoke(
        cli, ["check-config", "-c", str(write_config(tmp_path, [], webhooks=[hook]))]
    )
    assert shown.exit_code == 0 and "header-token-777" not in shown.output


def test_verify_on_a_terminal_says_what_it_reads(tmp_path: Path) -> None:
    import os
    import pty
    import select
    import subprocess
    import sys

    from logd.delivery.signing import fleetit_signature

    body = b'{"count": 1}'
    timestamp = "1700000000"
    signature = fleetit_signature(SECRET, int(timestamp), body)
    args = ["webhooks", "verify", "--secret", SECRET, "--timestamp", timestamp]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logd", *args, "--signature", signature],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    try:
        # Stdin is a terminal: it says what it waits for before it waits.
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready, "nothing on stderr while waiting on a terminal"
        line = proc.stderr.readline().decode()  # type: ignore[union-attr]
        assert line.startswith("reading the raw body from stdin; pipe it in")
        assert "Ctrl-D" in line
        os.write(master, body + b"\x04\x04")  # the body, then end of input (Ctrl-D twice)
        answer, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        proc.kill()
    assert answer.decode().strip() == "valid"
    piped = run(*args, "--signature", signature, stdin=body)
    assert piped.exit_code == 0 and "reading the raw body" not in out(piped)
