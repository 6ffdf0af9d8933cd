"""`logd check-config` on `http` descriptions: every problem at once, each at its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
from click.testing import CliRunner

from logd.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def check(tmp_path: Path, source: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"database": "x.db", "sources": [source]}))
    path.chmod(0o600)
    result = CliRunner().invoke(cli, ["check-config", "-c", str(path)])
    return result.exit_code, result.output


def good() -> dict[str, Any]:
    return {
        "name": "api",
        "provider": "http",
        "base_url": "https://api.example.com",
        "records": {"path": "data", "id": "id", "timestamp": "at"},
    }


def test_a_minimal_description_and_every_example_are_valid(
    tmp_path: Path, monkeypatch: Any
) -> None:
    assert check(tmp_path, good())[0] == 0
    for var in ("FLEETIT_TOKEN", "EP_CLIENT_ID", "EP_CLIENT_SECRET", "EVENTS_API_KEY"):
        monkeypatch.setenv(var, "x")
    for example in sorted(EXAMPLES.glob("*.toml")):
        result = CliRunner().invoke(cli, ["check-config", "-c", str(example)])
        assert result.exit_code == 0, (example.name, result.output)


def test_bad_descriptions_are_named_by_key_path(tmp_path: Path) -> None:
    source = {
        **good(),
        "records": {
            "path": "data[",
            "id": "id",
            "timestamp": {"path": "at", "format": "iso"},
            "message": "lenght(msg)",
        },
        "status": [
            {"path": "ok", "op": "=", "value": False, "status": "failure"},
            {"path": "err", "op": "not empty", "status": "broken"},
            {"path": "code", "op": "<", "status": "failure"},
        ],
        "paging": {"offset": {"limit": 10}, "cursor": {"path": "next"}},
        "auth": {"bearer": {"token": "t"}, "basic": {"username": "u", "password": "p"}},
        "incremental": {"order": "newest", "lookbak": "1h"},
        "request": {"path": "/x", "body": {"a": 1}},
    }
    code, output = check(tmp_path, source)
    assert code == 2
    lines = output.splitlines()

    def line(key: str) -> str:
        found = [ln for ln in lines if f"sources[0].{key}: " in ln]
        assert found, (key, output)
        return found[0]

    assert "is not a JMESPath expression: it ends too early" in line("records.path")
    assert "no function named lenght()" in line("records.message.path")
    assert "iso8601, epoch_s, epoch_ms or a strptime" in line("records.timestamp")
    assert "'=='" in line("status[0].op")
    assert "'failure', 'pending' or 'success'" in line("status[1].status")
    assert "needs a `value`" in line("status[2]")
    assert "exactly one paging style" in line("paging") and "offset, cursor" in line("paging")
    assert "exactly one of bearer" in line("auth")
    assert "did you mean `lookback`" in line("incremental.lookbak")
    assert "newest_first" in line("incremental.order")
    assert 'method = "POST"' in line("request")
