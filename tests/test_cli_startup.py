"""What `logd --help` and the read commands import: only what they use (row 3, CLI start-up).

Each command runs in a fresh interpreter, which then lists the heavy modules it imported.
Timing belongs to bench/row3_cli.py; these tests pin down the imports that made it slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import sqlite_utils

from logd import Entry, Status
from logd.errors import StoreError
from logd.plugin.entrypoints import enabled_entry_points, may_add_commands
from logd.store.interface import Filters
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.store import Store

# What the read commands and --help did import before: the config models, the HTTP client,
# the scheduler, the writer's sqlite_utils, rich for the query table, and every plugin (each
# bringing all of these). The status and stats tables still use rich: tests ask for JSON.
HEAVY = (
    "rich",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "apscheduler",
    "sqlite_utils",
    "pluggy",
    "prometheus_client",
    "logd_",
    "logd.config.settings",
    "logd.plugin.manager",
    "logd.plugin.http",
    "logd.engine.poller",
)

PROBE = """
import json, sys
from logd.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="logd")
except SystemExit as stop:
    code = stop.code or 0
print("\\nEXIT", code)
print("LOADED", json.dumps(sorted(m for m in sys.modules if m.startswith(HEAVY))))
"""


def run_logd(*args: str, pythonpath: Path | None = None) -> tuple[int, str, list[str]]:
    """`logd ARGS` in a fresh interpreter: exit code, output, and the heavy modules loaded."""
    code = PROBE.replace("HEAVY", repr(HEAVY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env["COLUMNS"] = "200"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    out, _, loaded = done.stdout.rpartition("LOADED ")
    assert loaded, done.stdout + done.stderr
    body, _, exit_line = out.rstrip().rpartition("\nEXIT ")
    return int(exit_line or 0), body + done.stderr, json.loads(loaded)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "logd.db"
    entry = Entry(
        native_id="1",
        timestamp=datetime.now(UTC),
        status=Status.FAILURE,
        message="Failed",
        error="Timeout while contacting Fleetio",
        raw={"id": 1},
    )
    with Store(path) as store:
        store.commit_batch("fleet", [entry], {"watermark": "x"}, provider="fleetit")
    return path


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    """A config like the demo's: the database and one source (never validated by reads)."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"database = {json.dumps(str(db))}\n\n[[sources]]\n"
        'name = "fleet"\nprovider = "fleetit"\nbase_url = "http://127.0.0.1:9"\n'
        'token = "tok-123456"\nfleet_id = "1"\n'
    )
    return path


def test_query_imports_neither_config_models_nor_http_nor_plugins_nor_rich(
    db: Path, config: Path
) -> None:
    for where in (["--db", str(db)], ["-c", str(config)]):
        code, output, loaded = run_logd("query", "timeout", *where)
        assert code == 0 and "fleet:1" in output and "Timeout while" in output, output
        assert loaded == [], where


@pytest.mark.parametrize(
    "args",
    [["status", "-f", "json"], ["stats", "-f", "json"], ["show", "fleet:1", "-f", "json"]],
)
def test_other_read_commands_import_only_the_store(db: Path, args: list[str]) -> None:
    code, output, loaded = run_logd(*args, "--db", str(db))
    assert code == 0 and "fleet" in output, output
    assert loaded == []


def test_webhooks_list_reads_without_the_config_models(db: Path) -> None:
    code, output, loaded = run_logd("webhooks", "list", "--db", str(db), "-f", "json")
    assert code == 0 and output.strip().startswith("["), output
    assert loaded == []


def test_help_imports_no_plugin_when_none_adds_commands() -> None:
    if any(may_add_commands(ep) for ep in enabled_entry_points()):
        pytest.skip("an installed plugin may add commands: --help has to import it")
    code, output, loaded = run_logd("--help")
    assert code == 0 and "query" in output and "webhooks" in output
    assert loaded == []


def fake_plugin(site: Path, name: str, source: str, extra: dict[str, str] | None = None) -> None:
    """An installed distribution whose entry point `name` is the module `name`."""
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    for module, text in (extra or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(text))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[logd]\n{name} = {name}\n")


COMMANDS = """
import click

from logd import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("zz-hello")
    def hello():
        '''Say hello from a plugin.'''
        click.echo("hello from zz")
"""


def test_help_still_lists_plugin_commands(tmp_path: Path) -> None:
    fake_plugin(tmp_path, "zz_named", COMMANDS)
    # A module that pulls its hooks in wholesale does not name them: it is imported too.
    fake_plugin(
        tmp_path,
        "zz_star",
        "from zz_star_hooks import *\n",
        {"zz_star_hooks": COMMANDS.replace("zz-hello", "zz-star")},
    )
    code, output, loaded = run_logd("--help", pythonpath=tmp_path)
    assert code == 0 and "zz-hello" in output and "Say hello from a plugin." in output
    assert "zz-star" in output
    assert "logd.plugin.manager" in loaded  # the plugins were loaded for it
    code, output, _ = run_logd("zz-hello", pythonpath=tmp_path)
    assert code == 0 and "hello from zz" in output


def test_may_add_commands_reads_the_source_only_where_it_can_tell(tmp_path: Path) -> None:
    def entry_point(value: str) -> EntryPoint:
        return EntryPoint(name="x", value=value, group="logd")

    (tmp_path / "zz_plain.py").write_text(
        "from logd import hookimpl\n\n@hookimpl\ndef register_providers(register): pass\n"
    )
    (tmp_path / "zz_names.py").write_text("from .cli import register_commands\n")
    (tmp_path / "zz_dynamic.py").write_text("globals().update(vars(__import__('x')))\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert not may_add_commands(entry_point("zz_plain"))
        assert may_add_commands(entry_point("zz_names"))
        assert may_add_commands(entry_point("zz_dynamic"))
        assert may_add_commands(entry_point("zz_plain:plugin"))  # an object: import it
        assert may_add_commands(entry_point("zz_plain.sub"))  # would import the parent
        assert may_add_commands(entry_point("zz_not_installed"))  # loading reports it
    finally:
        sys.path.remove(str(tmp_path))
    assert "zz_plain" not in sys.modules  # nothing was imported to tell


def test_a_bad_database_key_is_the_config_error_sync_gives(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("database = 5\n")
    code, output, _ = run_logd("query", "-c", str(config))
    line = f"error: {config}: database: must be a file path or a postgresql:// URL, not 5"
    assert code == 2 and line in output
    assert "Traceback" not in output
    code, output, _ = run_logd("sync", "-c", str(config))
    assert code == 2 and line in output
    config.write_text("database = [\n")
    code, output, _ = run_logd("query", "-c", str(config))
    assert code == 2 and f"error: {config}: invalid TOML" in output
    code, output, _ = run_logd("query", "-c", str(tmp_path / "none.toml"))
    assert code == 2 and "not found" in output and "hint:" in output


def test_a_relative_database_is_found_beside_the_config(tmp_path: Path, db: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "logd.db").write_bytes(db.read_bytes())
    config = tmp_path / "config.toml"
    config.write_text('database = "data/logd.db"\n')
    code, output, loaded = run_logd("query", "timeout", "-c", str(config))
    assert code == 0 and "fleet:1" in output and loaded == []


def test_reader_reads_what_store_reads_and_writes_nothing(db: Path, tmp_path: Path) -> None:
    with Store(db, create=False) as store, Reader(db) as reader:
        for filters in (Filters(), Filters(text="timeout"), Filters(text="a OR b")):
            assert reader.search(filters) == store.search(filters)
        assert reader.get("fleet:1") == store.get("fleet:1")
        assert reader.source_stats() == store.source_stats()
        assert reader.stats() == store.stats() and reader.schedule() == store.schedule()
        with pytest.raises(StoreError, match="read-only"):
            reader.commit_batch("fleet", [], {"watermark": "y"}, provider="fleetit")
    with pytest.raises(StoreError, match="no logd database"):
        Reader(tmp_path / "none.db")
    other = tmp_path / "other.db"
    sqlite_utils.Database(other)["t"].insert({"a": 1})
    with pytest.raises(StoreError, match="not a logd database"):
        Reader(other)


def test_sync_imports_only_the_plugins_of_its_providers(tmp_path: Path) -> None:
    # The bundled four others cost a sync ~100 ms of imports; check-config still loads all
    # (it is where two plugins claiming one provider name are caught).
    from logd_fleetit import FleetITSimulator

    with FleetITSimulator(records=3) as sim:
        config = tmp_path / "config.toml"
        source = sim.demo_source("fleet")
        config.write_text(
            f"database = {json.dumps(str(tmp_path / 'logd.db'))}\n\n[[sources]]\n"
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in source.items())
        )
        code, output, loaded = run_logd("sync", "-q", "-c", str(config))
        assert code == 0 and "3 new" in output, output
        plugins = {m.split(".")[0] for m in loaded if m.startswith("logd_")}
        assert plugins == {"logd_fleetit"}, plugins
        code, output, loaded = run_logd("check-config", "-c", str(config))
        assert code == 0, output
        bundled = {"logd_akinon", "logd_elasticpath", "logd_fleetit", "logd_maestra"}
        assert bundled <= {m.split(".")[0] for m in loaded}
