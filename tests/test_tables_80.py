"""Every table at 80 columns, read as text: one line per row, ids whole, errors whole below.

The commands run as an operator runs them (`COLUMNS=80 logd …`) on stores filled by the real
engine from the simulators, or by the store's own writers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from logd_elasticpath import ElasticPathSimulator
from logd_pegasus import PegasusSimulator

from logd.cli.main import cli
from logd.cli.table import cell_width
from logd.plugin.testing import SyncRun
from logd.store.interface import Attempt, BatchResult, BatchTransaction, NewDelivery
from logd.store.sqlite.store import Store

SOURCES = ("akinon", "elasticpath", "fleet", "maestra", "pegasus")


def run(*args: str, columns: int = 80) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def assert_fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    too_wide = [line for line in lines if cell_width(line) > width]
    assert not too_wide, "\n".join(too_wide)
    return lines


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with Elastic Path's UUID ids and Pegasus' `change:object` modification ids."""
    directory = tmp_path_factory.mktemp("synced")
    with ElasticPathSimulator() as ep, PegasusSimulator(records=60) as pg:
        run_ = SyncRun(directory, [ep.demo_source("elasticpath"), pg.demo_source("pegasus")])
        reports = run_.sync()
        assert all(r.ok for r in reports.values()), reports
        run_.close()
    yield directory / "logd.db"


@pytest.mark.parametrize("columns", [80, 200])
def test_query_prints_every_id_whole_at_any_width(synced: Path, columns: int) -> None:
    ids = [r["id"] for r in json.loads(run("query", "--db", str(synced), "-n", "0", "-f", "json"))]
    assert any(i.startswith("elasticpath:") and len(i) > 40 for i in ids)
    assert any(i.startswith("pegasus:") and i.count(":") >= 2 for i in ids)  # modifications
    lines = run("query", "--db", str(synced), "-n", "0", columns=columns).splitlines()
    # The note under the table on times logd only observed (marked `~`) is not an entry.
    lines = [line for line in lines if not line.startswith("~ ")]
    if columns == 80:
        assert_fits("\n".join(lines))
    assert len(lines) == len(ids) + 1  # one line an entry
    printed = [
        next(w for w in line.split() if ":" in w and not w[0].isdigit()) for line in lines[1:]
    ]
    assert printed == ids  # whole, in order: each can be pasted into `logd show`
    assert all("…" not in i for i in printed)
    if columns == 200:
        assert lines[0].split()[:3] == ["time", "(UTC)", "id"]


def test_a_printed_id_pastes_into_show(synced: Path) -> None:
    line = run("query", "--db", str(synced), "--source", "pegasus", "-n", "1").splitlines()[1]
    entry_id = next(w for w in line.split() if w.startswith("pegasus:"))
    shown = json.loads(run("show", entry_id, "--db", str(synced), "-f", "json"))
    assert shown["id"] == entry_id


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    """Five sources whose last poll failed with a long error, a webhook delivery dead."""
    path = tmp_path / "logd.db"
    now = datetime.now(UTC)
    with Store(path) as store:
        for n, source in enumerate(SOURCES):
            run_id = store.start_run(source)
            store.finish_run(
                run_id,
                error=f"cannot reach http://127.0.0.1:{40300 + n}/api/v1/logs?page=1: "
                "[Errno 111] Connection refused (after 5 attempts over 31s); "
                "the next poll starts again from the stored cursor",
            )
        dead = "dlv_" + "d" * 32

        def queue(tx: BatchTransaction, result: BatchResult) -> None:
            tx.enqueue(NewDelivery(dead, "ops", "fleet", "fleetit", 0, b"{}"), now)
            tx.enqueue(NewDelivery("dlv_" + "e" * 32, "ops", "pegasus", "pegasus", 0, b"{}"), now)

        store.commit_batch("fleet", [], None, hooks=[queue], provider="fleetit")
        store.record_attempts(
            [
                Attempt(
                    dead, "dead", 500, "HTTP 500 from hooks.example.com: " + "upstream down " * 8,
                    now, now,
                )
            ],
        )  # fmt: skip
    return path


def test_status_with_five_failing_sources_is_a_line_a_source(failing: Path) -> None:
    text = run("status", "--db", str(failing))
    lines = assert_fits(text)
    header, rows = lines[0], lines[1:6]
    # Headers whole, never split over two lines; the zone named.
    assert "(UTC)" in header and "error" in header and not lines[6].strip()
    assert [row.split()[0] for row in rows] == list(SOURCES)  # names whole, a line each
    assert all(" failing " in row and row.endswith("…") for row in rows)
    # Below the table: each failing source's whole error (wrapped to the line, not cut).
    below = " ".join(line.strip() for line in lines[7:])
    for n, source in enumerate(SOURCES):
        assert f"{source}: cannot reach http://127.0.0.1:{40300 + n}/api/v1/logs?page=1:" in below
    assert below.count("the next poll starts again from the stored cursor") == 5
    assert len(lines) <= 7 + 5 * 3  # the 68 lines of a folding table, down to this
    as_json = json.loads(run("status", "--db", str(failing), "-f", "json"))
    assert all(r["last_error"].endswith("from the stored cursor") for r in as_json)


def test_status_at_200_columns_shows_every_column(failing: Path) -> None:
    header = run("status", "--db", str(failing), columns=200).splitlines()[0]
    assert "hooks pending/dead" in header and "pending  " in header


def test_webhooks_list_is_a_line_a_delivery_with_its_id_and_time(failing: Path) -> None:
    listed = json.loads(run("webhooks", "list", "--db", str(failing), "-f", "json"))
    text = run("webhooks", "list", "--db", str(failing))
    lines = assert_fits(text)
    assert lines[0].split()[:4] == ["delivery", "created", "(UTC)", "state"]
    rows = lines[1:3]
    assert [row.split()[0] for row in rows] == [d["delivery_id"] for d in listed]
    assert all(re.fullmatch(r"dlv_[0-9a-f]{32}", row.split()[0]) for row in rows)
    created = datetime.fromisoformat(listed[0]["created_at"]).astimezone(UTC)
    assert rows[0].split()[1] == created.strftime("%H:%M:%S")  # UTC, today: the time of day
    dead = next(d for d in listed if d["state"] == "dead")
    below = " ".join(line.strip() for line in lines[4:])
    assert f"{dead['delivery_id']}: {dead['last_error'].strip()}" == below


def test_stats_at_80_columns_says_its_window(failing: Path, synced: Path) -> None:
    lines = assert_fits(run("stats", "--db", str(synced)))
    since = datetime.now(UTC) - timedelta(days=7)
    assert lines[0] in {
        f"entries from {(since - timedelta(minutes=m)).strftime('%Y-%m-%d %H:%M')} UTC to now, "
        "by source"
        for m in (0, 1)
    }
    assert lines[1].split() == ["source", "entries", "failures", "failure_rate", "pending"]
    assert {line.split()[0] for line in lines[2:]} == {"elasticpath", "pegasus"}


def test_healthy_status_at_80_columns_keeps_headers_and_names_whole(synced: Path) -> None:
    with Store(synced) as store:
        store.set_schedule("d1", "a-source-with-a-rather-long-name", datetime.now(UTC), 30, 0)
        text = run("status", "--db", str(synced))
        store.clear_schedule("d1")
    lines = assert_fits(text)
    headers = {"source", "state", "last success (UTC)", "next run (UTC)", "entries", "failures"}
    assert set(re.split(r"\s{2,}", lines[0])) <= headers | {"pending", "hooks pending/dead"}
    assert "last error" not in lines[0]  # nothing failed: no column of dashes
    assert [line.split()[0] for line in lines[1:]] == [
        "a-source-with-a-rather-long-name",
        "elasticpath",
        "pegasus",
    ]
    assert "never polled" in lines[1] and len(lines) == 4
