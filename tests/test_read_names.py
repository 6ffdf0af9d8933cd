"""A misspelt `--source` or `--provider` is an error listing the known names, not "no entries"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.store.sqlite.store import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "logd.db"
    entry = Entry(native_id="1", timestamp=datetime.now(UTC), status=Status.FAILURE, message="m")
    with Store(path) as store:
        store.commit_batch("fleet", [entry], {"watermark": "x"}, provider="fleetit")
        # Polled, nothing stored yet: still a name the user may ask for.
        store.commit_batch("quiet", [], {"watermark": "y"}, provider="fleetit")
    return path


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"database = {json.dumps(str(db))}\n[[sources]]\n"
        'name = "shop"\nprovider = "elasticpath"\nclient_id = "i"\nclient_secret = "s"\n'
    )
    return path


def query(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["query", *args, "-f", "json"])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "name", "known", "hint"),
    [
        ("--source", "flet", "fleet, quiet, shop", "did you mean --source fleet?"),
        ("--provider", "fleet", "elasticpath, fleetit", "did you mean --provider fleetit?"),
    ],
)
def test_an_unknown_name_is_exit_2_listing_the_known_ones(
    config: Path, option: str, name: str, known: str, hint: str
) -> None:
    code, output = query("-c", str(config), option, name)
    assert code == 2, output
    assert f"no {option[2:]} named {name!r} in the store or the config; known: {known}" in output
    assert hint in output


@pytest.mark.parametrize(
    "args",
    [
        ["--source", "fleet"],
        ["--source", "quiet"],  # polled, nothing stored
        ["--source", "shop"],  # configured, never synced
        ["--provider", "elasticpath"],
        ["--provider", "fleetit", "--source", "fleet"],
    ],
)
def test_stored_or_configured_names_are_accepted(config: Path, args: list[str]) -> None:
    code, output = query("-c", str(config), *args)
    assert code == 0, output


def test_without_a_config_the_store_alone_knows_the_names(db: Path) -> None:
    code, output = query("--db", str(db), "--source", "shop")
    assert code == 2 and "known: fleet, quiet" in output, output
    assert query("--db", str(db), "--source", "fleet")[0] == 0


def test_the_check_imports_neither_pydantic_nor_plugins(config: Path) -> None:
    probe = (
        "import sys\nfrom logd.cli.main import cli\n"
        "try:\n    cli(sys.argv[1:])\nexcept SystemExit as stop:\n    code = stop.code\n"
        "heavy = [m for m in sys.modules if m.startswith(('pydantic', 'logd_', 'logd.plugins'))]"
        "\nprint('EXIT', code, 'HEAVY', heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    done = subprocess.run(
        [sys.executable, "-c", probe, "query", "-c", str(config), "--source", "flet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "EXIT 2 HEAVY []" in done.stdout, done.stdout + done.stderr
