"""One rule for times in every command: UTC unless --local, the zone in headers, and a date
read in the zone the tables show, so `query --since DATE` and `stats --by day` agree."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.cli.stats import write_bars
from logd.store.sqlite.store import Store
from logd.timeparse import parse_time, short_time

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(minutes=30)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An entry every 20 minutes for three days, every seventh one a failure."""
    path = tmp_path_factory.mktemp("times") / "logd.db"
    by_source: dict[str, list[Entry]] = {"fleet": [], "shop": []}
    for n in range(3 * 72):
        e = Entry(
            native_id=str(n),
            timestamp=NOW - timedelta(minutes=20 * n),
            status=Status.FAILURE if n % 7 == 0 else Status.SUCCESS,
            message="m",
        )
        by_source["fleet" if n % 2 else "shop"].append(e)
    with Store(path) as store:
        for source, provider in (("fleet", "fleetit"), ("shop", "akinon")):
            store.commit_batch(source, by_source[source], None, provider=provider)
    return path


@pytest.fixture(autouse=True)
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A user in Tokyo: local time is UTC+9 all year (no DST to make a test flaky)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()  # what a process started with TZ set has from the start; SQLite's too
    yield
    monkeypatch.undo()
    time.tzset()


def logd(db: Path, *args: str) -> str:
    """`COLUMNS=120 logd … --db DB`."""
    result = CliRunner().invoke(cli, [*args, "--db", str(db)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("local", [False, True])
def test_query_since_a_date_and_stats_by_day_count_the_same(db: Path, local: bool) -> None:
    flag = ["--local"] if local else []
    day = (NOW - timedelta(days=1)).date().isoformat()
    queried = json.loads(logd(db, "query", "--since", day, "-n", "0", "-f", "json", *flag))
    rows = json.loads(logd(db, "stats", "--by", "day", "-f", "json", *flag))
    counted = sum(r["entries"] for r in rows if r["day"] >= day)
    assert counted == len(queried) > 0
    failed = json.loads(logd(db, "query", "--since", day, "--failed", "-n", "0", "-f", "json"))
    if not local:
        assert sum(r["failures"] for r in rows if r["day"] >= day) == len(failed)
        # UTC: the day starts at 00:00 UTC.
        assert min(r["timestamp"] for r in queried) >= f"{day}T00:00:00"


def test_stats_by_hour_groups_in_the_zone_shown(db: Path) -> None:
    utc = json.loads(logd(db, "stats", "--by", "hour", "-f", "json"))
    tokyo = json.loads(logd(db, "stats", "--by", "hour", "-f", "json", "--local"))
    # Tokyo is 9 hours ahead all year: the same counts, labels moved by 9 hours.
    moved = {
        (r["source"], (datetime.fromisoformat(r["hour"]) + timedelta(hours=9)).isoformat(" ")[:16])
        for r in utc
    }
    assert {(r["source"], r["hour"]) for r in tokyo} == moved
    assert sum(r["entries"] for r in utc) == sum(r["entries"] for r in tokyo) > 60  # 24h


def test_tables_name_their_zone(db: Path) -> None:
    assert logd(db, "query", "-n", "1").split()[:3] == ["time", "(UTC)", "id"]
    assert logd(db, "query", "-n", "1", "--local").split()[:3] == ["time", "(JST)", "id"]
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S")
    assert logd(db, "query", "-n", "1").splitlines()[1].startswith(stamp)
    local = (NOW + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    assert logd(db, "query", "-n", "1", "--local").splitlines()[1].startswith(local)
    assert logd(db, "stats").startswith("entries from ") and " UTC to now, by source" in logd(
        db, "stats"
    )
    assert " JST to now, by day (JST)" in logd(db, "stats", "--by", "day", "--local")
    shown = logd(db, "show", "shop:0", "--local")
    assert f"({local} JST)" in shown
    assert "by hour" in logd(db, "stats", "--by", "hour")


def test_a_time_without_a_zone_is_utc_unless_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_time("2026-11-30T10:00+09:00") == datetime(2026, 11, 30, 1, tzinfo=UTC)
    assert parse_time("2026-11-30T10:00Z", local=True) == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert short_time(None) is None
    assert short_time("2020-01-02T03:04:05+00:00") == "2020-01-02 03:04"


def test_stats_by_day_draws_entries_and_failures_per_source(db: Path) -> None:
    result = CliRunner().invoke(
        cli, ["stats", "--by", "day", "--db", str(db)], env={"COLUMNS": "80"}
    )
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("entries from ") and lines[0].endswith("UTC to now, by day (UTC)")
    rows = json.loads(logd(db, "stats", "--by", "day", "-f", "json"))
    days = sorted({r["day"] for r in rows})
    first = {"fleet": 3, "shop": 4 + len(days)}  # after the window, the legend, the name
    assert lines[2] == "fleet" and lines[first["shop"] - 1] == "shop"
    busiest = {s: max(r["entries"] for r in rows if r["source"] == s) for s in first}
    for r in rows:  # one line per source and day: a bar with its failures, then the counts
        line = lines[first[r["source"]] + days.index(r["day"])]
        assert line.startswith(f"  {r['day']}  █")
        assert line.endswith(f"{r['entries']:>2,} entries  {r['failures']:>2,} failed")
        assert ("▒" in line) == (r["failures"] > 0)
        if r["entries"] == busiest[r["source"]]:  # each source's busiest fills the bar
            assert len(line.split()[1]) == 80 - len("  2026-11-30  ") - len(
                "  72 entries  10 failed"
            )


def test_failures_are_red_on_a_terminal() -> None:
    rows = [{"source": "s", "day": "2026-11-30", "entries": 10, "failures": 5}]
    out = io.StringIO()
    write_bars(rows, "day", out, width=60, color=True)
    assert "\x1b[1;31m▒▒" in out.getvalue() and out.getvalue().count("▒") >= 5
    out = io.StringIO()
    write_bars([], "day", out, width=60, color=False)
    assert out.getvalue() == "nothing to show\n"
