"""What operators look at: stats, follow, completion, and the store opened by other tools."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.cli.query import follow_rows
from logd.store.sqlite.store import Filters, Row, Store

NOW = datetime.now(UTC)


def entry(
    native_id: str, source: str, status: Status, hours_ago: float, message: str = "m"
) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=NOW - timedelta(hours=hours_ago),
        status=status,
        message=message,
    )
    return e


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "logd.db")
    s.commit_batch(
        "a",
        [
            entry("1", "a", Status.FAILURE, 1),
            entry("2", "a", Status.SUCCESS, 2),
            entry("3", "a", Status.SUCCESS, 24 * 10),
        ],
        None,
        provider="a",
    )
    s.commit_batch("b", [entry("1", "b", Status.PENDING, 1)], None, provider="b")
    return s


def test_stats_by_source_and_status(store: Store) -> None:
    result = CliRunner().invoke(cli, ["stats", "--db", str(store.path), "-f", "json"])
    rows = {r["source"]: r for r in json.loads(result.output)}
    assert rows["a"] == {
        "source": "a",
        "entries": 2,
        "failures": 1,
        "failure_rate": 50.0,
        "pending": 0,
    }
    assert rows["b"]["pending"] == 1
    everything = CliRunner().invoke(
        cli, ["stats", "--db", str(store.path), "--since", "30d", "--by", "status", "-f", "json"]
    )
    assert {r["status"]: r["entries"] for r in json.loads(everything.output)} == {
        "failure": 1,
        "pending": 1,
        "success": 2,
    }
    table = CliRunner().invoke(cli, ["stats", "--db", str(store.path)]).output
    assert "50.0%" in table


def test_follow_prints_new_and_changed_entries(store: Store) -> None:
    out = io.StringIO()
    stop_after = threading.Event()

    def writer() -> None:
        store.commit_batch(
            "a", [entry("9", "a", Status.FAILURE, 500, "late arrival timeout")], None, provider="a"
        )
        stop_after.set()

    timer = threading.Timer(0.05, writer)
    timer.start()
    follow_rows(
        store, Filters(statuses=("failure",)), "ndjson", out, limit=5, interval=0.1, max_polls=5
    )
    timer.join()
    ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    # The old failure first, then the one stored while following, though its own time is older.
    assert ids == ["a:1", "a:9"]


def test_completion_script() -> None:
    result = CliRunner().invoke(cli, ["completion", "bash"])
    assert result.exit_code == 0 and "_LOGD_COMPLETE" in result.output


def test_store_follows_the_sqlite_utils_fts_convention(store: Store) -> None:
    db = sqlite_utils.Database(store.path)
    assert db["entries"].detect_fts() == "entries_fts"
    assert {"failures", "latest"} <= set(db.view_names())
    hits = list(db["entries"].search("timeout"))
    assert hits == []
    assert [r["entry_id"] for r in db["failures"].rows] == ["a:1"]


def test_sqlite_utils_cli_reads_the_store(store: Store) -> None:
    exe = Path(sys.executable).with_name("sqlite-utils")
    if not exe.exists():
        pytest.skip("sqlite-utils CLI not installed")
    out = subprocess.run(
        [str(exe), "rows", str(store.path), "failures"], capture_output=True, text=True
    )
    assert out.returncode == 0 and '"entry_id": "a:1"' in out.stdout


def test_datasette_offers_search_on_entries(store: Store) -> None:
    datasette_app = pytest.importorskip("datasette.app")
    import asyncio

    async def fetch() -> tuple[int, dict[str, object]]:
        ds = datasette_app.Datasette([str(store.path)])
        response = await ds.client.get(f"/{store.path.stem}/entries.json?_search=m&_shape=objects")
        return response.status_code, response.json()

    status, body = asyncio.run(fetch())
    assert status == 200, body
    assert len(body["rows"]) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_follow_prints_one_header_above_the_first_entries(store: Store, fmt: str) -> None:
    out = io.StringIO()
    calls = 0
    real = store.changes_after

    def arrive(*args: object, **kwargs: object) -> list[tuple[int, Row]]:
        nonlocal calls
        calls += 1
        if calls <= 2:  # an entry arrives before each of the first two polls
            store.commit_batch(
                "a", [entry(f"n{calls}", "a", Status.FAILURE, 0, "new")], None, provider="a"
            )
        return real(*args, **kwargs)  # type: ignore[arg-type]

    store.changes_after = arrive  # type: ignore[method-assign]
    # Nothing matches at first: the header waits for the first entry that does.
    follow_rows(store, Filters(text="new"), fmt, out, limit=5, interval=0, max_polls=3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    if fmt == "table":
        assert lines[0].split()[:3] == ["time", "(UTC)", "id"]
    else:
        assert lines[0].startswith("id,")
    assert "a:n1" in lines[1] and "a:n2" in lines[2]
