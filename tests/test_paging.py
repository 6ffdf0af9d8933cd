"""Paging that does not advance stops the poll: one error naming the request, bounded requests,
what was stored kept, the cursor left where it was, and the next poll fine once the vendor is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from logd_akinon.simulator import AkinonSimulator
from logd_elasticpath.simulator import ElasticPathSimulator
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.engine.paging import EMPTY_RUN, EMPTY_RUN_UNSAID, PagingError, PagingGuard
from logd.plugin.entries import Batch, Entry, Status
from logd.plugin.http import REPEAT_LIMIT, SourceClient
from logd.plugin.testing import SyncRun, write_config

PATH = "/v2/integrations/logs/"


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=250) as s:
        yield s


def fleet(sim: FleetITSimulator, **keys: Any) -> dict[str, Any]:
    # Every poll walks all 250 records (3 pages), not only the last day.
    return {**sim.demo_source("fleet"), "lookback": "30d", **keys}


def sync(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["sync", "-c", str(config)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, [ln for ln in result.output.splitlines() if ln.startswith("error")]


def status(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["status", "-c", str(config), "--format", "json"])
    [row] = json.loads(result.output)
    return dict(row)


def count(config: Path) -> int:
    return int(status(config)["entries"])


def cursor(config: Path) -> Any:
    return status(config)["cursor"]


@pytest.mark.parametrize(
    ("fault", "grow", "said", "most_requests"),
    [
        # `next` stuck on one offset, the same page each time: the engine sees the page again.
        ("stuck", 0, "the same page came back again", 3),
        # The offset ignored: page 2 is page 1 again.
        ("ignored", 0, "the same page came back again", 2),
        # `next` stuck while the log grows, so the pages differ by a record and the cursor
        # stays: the engine sees a page of records this poll already had, and nothing new.
        ("stuck", 1, "records an earlier page of this poll already handed over", 3),
        # Empty pages that keep saying there is more (after the first, to compare with).
        ("empty", 0, f"{EMPTY_RUN} empty pages in a row", EMPTY_RUN + 1),
    ],
)
def test_fleetit_paging_that_does_not_advance_stops_the_poll(
    tmp_path: Path, sim: FleetITSimulator, fault: str, grow: int, said: str, most_requests: int
) -> None:
    config = write_config(tmp_path, [fleet(sim)])
    assert sync(config) == (0, [])
    good_cursor, stored = cursor(config), count(config)
    assert stored == 250

    sim.paging, sim.grow = fault, grow
    sim.add_records(5)
    before = len(sim.requests_to(PATH))
    code, errors = sync(config)
    assert code == 1
    [line] = errors  # one line: the source, what is wrong, the request
    assert line.startswith("error: fleet: paging does not advance: ")
    assert said in line and f"GET {sim.base_url}{PATH}?" in line
    assert len(sim.requests_to(PATH)) - before == most_requests
    assert cursor(config) == good_cursor  # the failed walk moved nothing
    assert count(config) >= stored  # nothing stored was lost

    sim.paging, sim.grow = None, 0
    assert sync(config) == (0, [])
    # The 5 new records, and one for each request the growing log answered.
    assert count(config) == 255 + most_requests * grow
    assert cursor(config) != good_cursor


def test_max_pages_caps_one_poll_and_a_first_poll_keeps_what_it_stored(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    config = write_config(tmp_path, [fleet(sim, max_pages=2)])
    code, [line] = sync(config)
    assert code == 1 and "more than max_pages (2) pages in one poll" in line
    assert line.startswith("error: fleet: ") and f"{sim.base_url}{PATH}" in line
    assert len(sim.requests_to(PATH)) == 3  # the third page was fetched, not stored
    assert count(config) == 200
    config = write_config(tmp_path, [fleet(sim)])
    assert sync(config) == (0, [])
    assert count(config) == 250


def test_elastic_path_ignoring_the_offset_stops_at_the_second_page(tmp_path: Path) -> None:
    with ElasticPathSimulator(integrations=(250,)) as ep:
        run = SyncRun(tmp_path, [ep.demo_source("ep")])
        ep.ignore_offset = True
        report = run.sync()["ep"]
        assert report.error is not None
        assert report.error.startswith("paging does not advance: the same page came back again")
        assert f"{ep.base_url}/v2/integrations/logs?" in report.error
        assert run.count() == 100  # page 1, stored
        assert len([r for r in ep.requests if r.method == "GET"]) == 2
        ep.ignore_offset = False
        assert run.sync()["ep"].ok
        assert run.count() == 250


def test_akinon_ignoring_the_page_number_stops_at_the_second_page(tmp_path: Path) -> None:
    with AkinonSimulator(flows=("flow-orders",), records=250, sub_logs=0, in_progress=0) as ak:
        source = {**ak.demo_source("ak"), "log_types": [1], "line_logs": False}
        source["download_failed"] = False
        run = SyncRun(tmp_path, [source])
        ak.ignore_page = True
        report = run.sync()["ak"]
        assert report.error is not None and "the same page came back again" in report.error
        assert "page=2" in report.error and f"{ak.base_url}/logs?" in report.error
        assert len(ak.requests_to("/logs")) == 2
        assert run.count() == 100
        ak.ignore_page = False
        assert run.sync()["ak"].ok
        assert run.count() == 250


# -- what must not trip: the providers' legitimate patterns, on the guard itself -------------


def entry(n: int) -> Entry:
    return Entry(str(n), datetime(2026, 1, 1, tzinfo=UTC), Status.SUCCESS)


def guard(max_pages: int = 100_000) -> tuple[PagingGuard, list[int]]:
    gets = [0]
    return PagingGuard(max_pages=max_pages, last_request=lambda: "GET /x", gets=lambda: gets[0]), (
        gets
    )


def test_pages_of_stored_records_and_moving_cursors_are_progress() -> None:
    check, gets = guard()
    # Pegasus re-walking a window of stored modifications: empty batches, one cursor, pages
    # that say more follow, but the provider found its records stored (known_ids).
    for _ in range(3 * EMPTY_RUN_UNSAID):
        gets[0] += 1
        check.consulted = 100
        check.check(Batch([], cursor={"m": 1}, more=True))
    # Pegasus's empty sections and Akinon's empty flows and log types (a 404): many empty
    # listings in a row under one cursor, each complete.
    for _ in range(3 * EMPTY_RUN_UNSAID):
        gets[0] += 1
        check.check(Batch([], cursor={"m": 1}, more=False))
    # Maestra's empty windows: no GET (exports are POSTs, parts are streamed), or a cursor
    # that moves; its batches do not say `more`.
    for i in range(3 * EMPTY_RUN_UNSAID):
        check.check(Batch([], cursor={"m": 1}))
        gets[0] += 1
        check.check(Batch([], cursor={"since": i}))
    # FleetIT's idle walk: other records on each page, one cursor.
    for i in range(10):
        gets[0] += 1
        check.check(Batch([entry(i), entry(i + 100)], cursor={"w": 1}, more=True))
    # Akinon re-fetching a follow-up by id (pages=0) and the page listing it again.
    check.check(Batch([entry(7)], cursor={"a": 1}, pages=0))
    check.check(Batch([entry(7)], cursor={"a": 1}))
    check.check(Batch([entry(7)], cursor={"a": 1}, pages=0))
    # The same records again under a new cursor (a resumed walk moving its offset).
    check.check(Batch([entry(7)], cursor={"a": 2}))


def test_the_same_page_twice_and_empty_pages_in_a_row_trip() -> None:
    check, gets = guard()
    page = [entry(1), entry(2), entry(3)]
    check.check(Batch(page, cursor={"w": None}))
    # Same first and last id and length, another id inside: not the same page.
    check.check(Batch([entry(1), entry(9), entry(3)], cursor={"w": None}))
    with pytest.raises(PagingError, match="the same page came back again; last request GET /x"):
        check.check(Batch([entry(1), entry(9), entry(3)], cursor={"w": None}))
    # Empty pages that say more follow; and, as a backstop, empty GETs that say nothing.
    for more, limit in ((True, EMPTY_RUN), (None, EMPTY_RUN_UNSAID)):
        check, gets = guard()
        for _ in range(limit):  # the first page, then limit - 1 more like it
            gets[0] += 1
            check.check(Batch([], cursor={"w": None}, more=more))
        gets[0] += 1
        with pytest.raises(PagingError, match=f"{limit} empty pages in a row"):
            check.check(Batch([], cursor={"w": None}, more=more))
    check, _ = guard(max_pages=3)
    check.check(Batch([entry(1)], cursor=None, pages=3))
    with pytest.raises(PagingError, match=r"more than max_pages \(3\)"):
        check.check(Batch([entry(2)], cursor=None))


def test_pegasus_empty_sections_are_fine_and_empty_pointer_pages_stop_the_poll(
    tmp_path: Path,
) -> None:
    from logd_pegasus.simulator import PegasusSimulator

    # Sections of 2 changelogs and an item no change matches: 225 sections (more than the
    # backstop's 200), each empty and complete (next_pointer -1), under one cursor: a quiet
    # window, not a fault.
    with PegasusSimulator(records=450, section_size=2) as peg:
        item = {"resource": "vehicles", "ids": [999_999]}
        source = {**peg.demo_source("peg"), "modifications": [item]}
        run = SyncRun(tmp_path / "quiet", [source])
        report = run.sync()["peg"]
        assert report.ok, report.error
        pages = [r for r in peg.requests if r.path == "/api/changelogs/modifications"]
        assert len(pages) == 225

    # Empty pages whose next_pointer keeps moving on: the vendor says more, gives nothing.
    with PegasusSimulator(records=50) as peg:
        source = {**peg.demo_source("peg"), "modifications": [{"resource": "vehicles"}]}
        run = SyncRun(tmp_path / "empty", [source])
        peg.empty_modification_pages = True
        report = run.sync()["peg"]
        assert report.error is not None
        assert f"{EMPTY_RUN} empty pages in a row that say there is more" in report.error
        assert (
            f"GET {peg.base_url}" in report.error and "/changelogs/modifications?" in report.error
        )
        pages = [r for r in peg.requests if r.path == "/api/changelogs/modifications"]
        assert len(pages) == EMPTY_RUN
        assert run.count() == 50  # the changelogs, stored before the modifications walk
        peg.empty_modification_pages = False
        assert run.sync()["peg"].ok


def test_pages_that_bring_nothing_new_to_the_poll_trip_whatever_their_cursor() -> None:
    # Elastic Path's offset counted on past a repeated page: the cursor moves, the records not.
    check, _ = guard()
    check.check(Batch([entry(1), entry(2)], cursor={"offset": 0}))
    check.check(Batch([entry(3), entry(4)], cursor={"offset": 2}))
    with pytest.raises(PagingError, match="a page repeated 2 records an earlier page"):
        check.check(Batch([entry(1), entry(2)], cursor={"offset": 4}))  # not the page before
    # Pegasus's changelogs hand over only rows not stored yet: a repeated page is an empty
    # batch whose ids the provider found among the rows this poll handed over.
    check, _ = guard()
    check.check(Batch([entry(1), entry(2)], cursor={"resume": 1}, more=True))
    check.consult({"1", "2"})
    with pytest.raises(PagingError, match="a page repeated 2 records"):
        check.check(Batch([], cursor={"resume": 2}, more=True))


def test_overlaps_and_records_of_earlier_polls_are_not_repeats() -> None:
    check, _ = guard()
    # Pegasus modifications: a page's last item comes back first on the next; the stored one
    # is filtered out, even when it is all the last page holds.
    check.check(Batch([entry(1), entry(2)], cursor={"p": 0}, more=True))
    check.consult({"2"})
    check.check(Batch([entry(3), entry(4)], cursor={"p": 2}, more=True))
    check.consult({"4"})
    check.check(Batch([], cursor={"p": 4}, more=False))
    # An idle poll (Akinon, FleetIT): pages of records stored by earlier polls, filtered out
    # or handed over again, under one cursor or a moving one.
    check, _ = guard()
    for i in range(0, 20, 2):
        check.consult({str(i), str(i + 1)})
        check.check(Batch([], cursor={"w": 1}, more=True))
        check.check(Batch([entry(100 + i), entry(101 + i)], cursor={"w": i}))


def test_the_same_get_asked_again_and_again_trips_the_client() -> None:
    # The backstop for walks the guard cannot see: a GET repeated within one poll.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"results": []}))
    client = SourceClient("s", "https://api.example.com", transport=transport)
    for _ in range(REPEAT_LIMIT - 1):
        client.get_json("/logs", params={"offset": 100})
    with pytest.raises(
        PagingError,
        match=f"GET https://api.example.com/logs\\?offset=100 asked {REPEAT_LIMIT} times",
    ):
        client.get_json("/logs", params={"offset": 100})


def test_the_guard_keeps_a_bounded_window_of_ids_however_long_the_walk() -> None:
    from datetime import UTC, datetime

    from logd.engine.paging import HANDED, PagingGuard
    from logd.plugin.entries import Batch, Entry, Status

    guard = PagingGuard(max_pages=10**9, last_request=lambda: "GET x", gets=lambda: 0)
    when = datetime(2026, 11, 30, tzinfo=UTC)
    for page in range(3 * HANDED // 100):
        entries = [Entry(f"{page}-{i}", when, Status.SUCCESS) for i in range(100)]
        guard.check(Batch(entries, cursor={"page": page}))
    # A 1M-record backfill must not keep a hash per record: memory stays a window's worth.
    assert len(guard._handed) <= HANDED + 100
    # A page from within the window is still caught.
    recent = [Entry(f"{3 * HANDED // 100 - 1}-{i}", when, Status.SUCCESS) for i in range(100)]
    with pytest.raises(Exception, match="paging does not advance"):
        guard.check(Batch(recent, cursor={"page": "again"}))
