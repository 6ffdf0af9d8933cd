"""`logd query`, `show` and `status` on a store filled through the real engine."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)


def make(
    native_id: str,
    hours_ago: float,
    status: Status,
    message: str,
    error: str | None = None,
    raw: object = None,
) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=NOW - timedelta(hours=hours_ago),
        status=status,
        message=message,
        error=error,
        raw=raw or {"id": native_id},
    )
    return e


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "logd.db"
    with Store(path) as store:
        store.commit_batch(
            "fleet",
            [
                make("1", 0.5, Status.FAILURE, "Failed", "Timeout while contacting Fleetio"),
                make("2", 3, Status.FAILURE, "Failed", "Connection refused"),
                make("3", 1, Status.SUCCESS, "Success"),
                make("4", 30, Status.FAILURE, "Failed", "timeout again"),
            ],
            {"watermark": "x"},
            provider="fleetit",
        )
        store.commit_batch(
            "shop",
            [
                make(
                    "a",
                    0.2,
                    Status.PENDING,
                    "POST /orders -> 202",
                    raw={"nested": {"deep": "needle-in-raw"}},
                ),
                make("b", 1.5, Status.FAILURE, "PUT /stock -> 500"),
            ],
            None,
            provider="other",
        )
    return path


def query(db: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["query", "--db", str(db), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return [row["id"] for row in json.loads(result.output)]


def test_newest_first_and_limit(db: Path) -> None:
    assert query(db) == ["shop:a", "fleet:1", "fleet:3", "shop:b", "fleet:2", "fleet:4"]
    assert query(db, "--limit", "2") == ["shop:a", "fleet:1"]
    assert len(query(db, "--limit", "0")) == 6


def test_filters(db: Path) -> None:
    assert query(db, "--failed") == ["fleet:1", "shop:b", "fleet:2", "fleet:4"]
    assert query(db, "--status", "pending") == ["shop:a"]
    assert query(db, "--source", "shop") == ["shop:a", "shop:b"]
    assert query(db, "--source", "shop", "--source", "fleet", "--limit", "1") == ["shop:a"]
    assert query(db, "--provider", "fleetit", "--failed") == ["fleet:1", "fleet:2", "fleet:4"]
    assert query(db, "--since", "2h") == ["shop:a", "fleet:1", "fleet:3", "shop:b"]
    assert query(db, "--since", "2h", "--until", "45m") == ["fleet:3", "shop:b"]
    since = (NOW - timedelta(days=2)).date().isoformat()
    assert len(query(db, "--since", since)) == 6


def test_plain_words_and_fts(db: Path) -> None:
    assert query(db, "timeout", "--failed", "--since", "2h") == ["fleet:1"]
    assert query(db, "timeout") == ["fleet:1", "fleet:4"]
    assert query(db, "needle-in-raw") == ["shop:a"]  # raw values are searchable
    assert query(db, "timeout OR refused") == []  # plain words: all must match
    assert query(db, "timeout OR refused", "--fts") == ["fleet:1", "fleet:2", "fleet:4"]
    assert query(db, "time*", "--fts") == ["fleet:1", "fleet:4"]


def test_bad_input_is_one_line_exit_2(db: Path) -> None:
    runner = CliRunner()
    for args, expected in [
        (["AND (", "--fts"], "'AND' at position 1 needs a word before it"),
        (["--since", "yesterday"], "cannot read 'yesterday' as a time"),
        (["--status", "broken"], "Invalid value for '--status'"),
    ]:
        result = runner.invoke(cli, ["query", "--db", str(db), *args])
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output
    missing = runner.invoke(cli, ["query", "--db", str(db.parent / "none.db")])
    assert missing.exit_code == 1 and "no logd database" in missing.output


def test_formats(db: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["query", "--db", str(db), "-f", "json", "-n", "1"]).output
    [obj] = json.loads(out)
    assert set(obj) == {
        "id",
        "source",
        "provider",
        "native_id",
        "timestamp",
        "status",
        "message",
        "error",
        "entity_type",
        "entity_id",
        "raw",
        "details",
        "timestamp_observed",
    }
    assert obj["raw"] == {"nested": {"deep": "needle-in-raw"}}
    nd = runner.invoke(cli, ["query", "--db", str(db), "-f", "ndjson"]).output.splitlines()
    assert [json.loads(line)["id"] for line in nd][:2] == ["shop:a", "fleet:1"]
    rows = list(
        csv.DictReader(
            io.StringIO(runner.invoke(cli, ["query", "--db", str(db), "-f", "csv"]).output)
        )
    )
    assert rows[0]["id"] == "shop:a" and rows[0]["status"] == "pending" and len(rows) == 6
    table = runner.invoke(cli, ["query", "--db", str(db), "--failed"]).output
    assert "fleet:1" in table and "Timeout while contacting Fleetio" in table
    empty = runner.invoke(cli, ["query", "--db", str(db), "nothing-matches-this"]).output
    assert "no matching entries" in empty


def test_show_prints_the_whole_entry(db: Path) -> None:
    result = CliRunner().invoke(cli, ["show", "shop:a", "--db", str(db)])
    assert result.exit_code == 0
    assert "needle-in-raw" in result.output and "POST /orders -> 202" in result.output
    as_json = CliRunner().invoke(cli, ["show", "shop:a", "--db", str(db), "-f", "json"])
    assert json.loads(as_json.output)["raw"]["nested"]["deep"] == "needle-in-raw"
    missing = CliRunner().invoke(cli, ["show", "shop:zzz", "--db", str(db)])
    assert missing.exit_code == 2 and "no entry 'shop:zzz'" in missing.output
    assert "any unique start of one" in missing.output


def test_show_takes_a_unique_start_of_an_id(tmp_path: Path) -> None:
    db = tmp_path / "logd.db"
    ids = ["ff666589-6822-4a4b-9f0a-0000000000aa", "ff666589-6822-4a4b-9f0a-0000000000ab"]
    with Store(db) as store:
        entries = [make(n, 1, Status.SUCCESS, n) for n in [*ids, "other"]]
        store.commit_batch("elasticpath", entries, None, provider="other")
        store.commit_batch("fleet", [make("12", 1, Status.FAILURE, "x")], None, provider="fleetit")
        assert store.ids_starting("elasticpath:ff6") == [f"elasticpath:{n}" for n in ids]
        assert store.ids_starting("fl") == ["fleet:12"] and store.ids_starting("fleet:") == [
            "fleet:12"
        ]
        store.commit_batch("fleet", [make("123", 1, Status.SUCCESS, "y")], None, provider="fleetit")
        assert store.ids_starting("elasticpath:", limit=1) == [f"elasticpath:{ids[0]}"]
        assert store.ids_starting("e\U0010ffff") == store.ids_starting("elasticpath:\ud7ff") == []

    def show(entry_id: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["show", entry_id, "--db", str(db), "-f", "json"])
        return result.exit_code, result.output

    code, out = show("elasticpath:ff666589-6822-4a4b-9f0a-0000000000ab")  # whole, as printed
    assert code == 0 and json.loads(out)["message"] == ids[1]
    code, out = show("elasticpath:ff666589-6822-4a4b-9f0a-0000000000a")  # the start of two
    assert code == 2 and "starts 2 entry ids" in out and "hint: type more of the id" in out
    assert f"elasticpath:{ids[0]}, elasticpath:{ids[1]}" in out
    assert show("elasticpath:ot")[0] == 0 and show("fl")[0] == 2  # fleet:12 and fleet:123
    assert json.loads(show("fleet:12")[1])["id"] == "fleet:12"  # a whole id is never a start
    code, out = show("elasticpath:zz")
    assert code == 2 and "no entry 'elasticpath:zz'" in out and "Traceback" not in out


def test_status_counts_and_cursor(db: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--db", str(db), "--format", "json"])
    stats = {row["source"]: row for row in json.loads(result.output)}
    assert (stats["fleet"]["entries"], stats["fleet"]["failures"]) == (4, 3)
    assert stats["shop"]["pending"] == 1
    assert stats["fleet"]["cursor"] == {"watermark": "x"}


def test_python_dash_m_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "logd", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("logd, version ")


def test_query_path_loads_no_plugins_or_http(db: Path) -> None:
    code = (
        "import sys; from logd.cli.main import cli\n"
        "try:\n    cli(['query', '--db', sys.argv[1], '-n', '1'])\nexcept SystemExit: pass\n"
        "heavy = ('httpx', 'logd_', 'apscheduler', 'logd.engine')\n"
        "bad = [m for m in sys.modules if m.startswith(heavy)]\n"
        "print('LOADED', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


def test_an_unknown_option_hints_at_dashdash_for_a_search_text(db: Path) -> None:
    result = CliRunner().invoke(cli, ["query", "--db", str(db), "-x"])
    assert result.exit_code == 2 and "No such option '-x'" in result.output
    assert "hint: use -- before a search text that starts with -: logd query -- -x" in (
        result.output
    )
    near = CliRunner().invoke(cli, ["query", "--db", str(db), "--sourc", "fleet"])
    assert near.exit_code == 2 and "Did you mean '--source'?" in near.output
    assert "hint: use --" not in near.output  # a typo of an option, not a search text
    searched = CliRunner().invoke(cli, ["query", "--db", str(db), "--", "-x"])
    assert searched.exit_code == 0 and "no matching entries" in searched.output


def test_every_format_option_says_what_it_gives() -> None:
    for command in (["query"], ["show"], ["status"], ["stats"], ["webhooks", "list"]):
        text = " ".join(CliRunner().invoke(cli, [*command, "--help"]).output.split())
        assert "-f, --format [" in text, command
        after = text.split("-f, --format [", 1)[1].split("]", 1)[1].strip()
        assert after.split()[0].rstrip(":") in {"table", "pretty"}, (command, after)
        assert "--local" in text, command
