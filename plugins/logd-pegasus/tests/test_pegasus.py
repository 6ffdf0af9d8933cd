"""The Pegasus provider against its simulator, through the real engine and store.

What every provider does is the contract suite's (`logd.plugin.contract`); these tests pin
Pegasus's own: the walk to ground, its resume point, modifications, auth kinds and mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from logd_pegasus import PegasusSimulator
from logd_pegasus.provider import changelog_entry, modification_entry
from logd_pegasus.simulator import UNAUTHORIZED

from logd import ConfigError, SimRequest, SimResponse, Status
from logd.plugin.testing import SyncRun
from logd.store.interface import BatchResult, BatchTransaction

SOURCE = "peg"


@pytest.fixture
def sim() -> Iterator[PegasusSimulator]:
    with PegasusSimulator(records=350) as s:
        yield s


def source(sim: PegasusSimulator, **keys: Any) -> dict[str, Any]:
    """A `[[sources]]` table without modifications unless given."""
    return {**sim.demo_source(SOURCE), "modifications": [], **keys}


def changelog_requests(sim: PegasusSimulator) -> list[SimRequest]:
    """Requests to `/changelogs` itself (not to `/changelogs/modifications`)."""
    return [r for r in sim.requests if r.path == "/api/changelogs"]


def modification_requests(sim: PegasusSimulator) -> list[SimRequest]:
    """Requests to `/changelogs/modifications`."""
    return [r for r in sim.requests if r.path == "/api/changelogs/modifications"]


def logins(sim: PegasusSimulator) -> int:
    """How many times the provider logged in."""
    return len(sim.requests_to("/api/login", "POST"))


def offsets(requests: list[SimRequest]) -> list[int]:
    """The `offset` of each request."""
    return [int(r.arg("offset") or 0) for r in requests]


def stored_changelogs(run: SyncRun) -> list[str]:
    """Native ids of stored changelogs (modifications carry `:` in theirs)."""
    return [r.native_id for r in run.rows() if ":" not in r.native_id]


def stored_modifications(run: SyncRun) -> list[str]:
    """Native ids of stored modifications."""
    return [r.native_id for r in run.rows() if ":" in r.native_id]


def vendor_ids(sim: PegasusSimulator) -> set[str]:
    """Every changelog id the simulator holds."""
    return {r["id"] for r in sim.changelogs}


def expected_modifications(sim: PegasusSimulator, resource: str, **query: Any) -> set[str]:
    """`{$$id}:{$$object}` of every modification the simulator has for this query."""
    return {
        f"{item['$$id']}:{item['$$object']}"
        for record in sim.changelogs
        for item in sim.modifications_of(record, resource, **query)
    }


class Counts:
    """A batch hook that adds up what each committed batch did, and can fail one commit."""

    def __init__(self, *, fail_at: int | None = None, then: Callable[[], None] | None = None):
        self.batches = 0
        self.new = 0
        self.unchanged = 0
        self.fail_at = fail_at
        self.then = then

    def __call__(self, tx: BatchTransaction, result: BatchResult) -> None:
        self.batches += 1
        if self.batches == self.fail_at:
            if self.then is None:
                raise RuntimeError("simulated crash while committing")
            self.then()  # e.g. arm a fault for the next request; this batch commits
        self.new += result.new
        self.unchanged += result.unchanged


def fail_changelogs_request(sim: PegasusSimulator, n: int, status: int) -> None:
    """The `n`-th changelogs request from now answers `status` (with retries, for good)."""
    serve, seen = sim.handle, 0

    def handle(request: SimRequest) -> SimResponse:
        nonlocal seen
        if request.path.rstrip("/").endswith("/changelogs"):
            seen += 1
            if seen >= n:
                return SimResponse.json({"message": f"simulated HTTP {status}"}, status)
        return serve(request)

    sim.handle = handle  # type: ignore[method-assign]


def put_vehicle(sim: PegasusSimulator, obj: int, when: datetime) -> dict[str, Any]:
    """Add one successful `PUT /api/vehicles/{obj}` changing `properties.OrderNumber`."""
    record = sim.make_changelog(when)
    record.update(
        method="PUT",
        path=f"/api/vehicles/{obj}",
        request={"data": {"properties": {"OrderNumber": 8012635798}}},
        response={"status": "200 OK", "status_code": 200, "data": {"id": obj}},
    )
    with sim.lock:
        sim.changelogs.append(record)
    return record


# -- changelogs ---------------------------------------------------------------------------


def test_backfill_equals_the_simulators_set(tmp_path: Path, sim: PegasusSimulator) -> None:
    run = SyncRun(tmp_path, [source(sim)])
    report = run.sync()[SOURCE]
    assert report.ok, report.error
    assert sorted(stored_changelogs(run)) == sorted(vendor_ids(sim))
    assert (report.new, report.pages) == (350, 4)
    failed = sum(1 for r in sim.changelogs if r["response"]["status_code"] >= 400)
    assert report.failures == failed > 0
    requests = changelog_requests(sim)
    assert offsets(requests) == [0, 100, 200, 300]
    assert {(r.arg("limit"), r.arg("full")) for r in requests} == {("100", "1")}
    record = sim.changelogs[0]
    stored = run.store.get(f"{SOURCE}:{record['id']}")
    assert stored is not None and stored.raw == record


def test_idle_second_poll_costs_one_changelogs_request(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    run = SyncRun(tmp_path, [source(sim)])
    run.sync()
    sim.requests.clear()
    report = run.sync()[SOURCE]
    assert (report.ok, report.new, report.updated) == (True, 0, 0)
    assert offsets(changelog_requests(sim)) == [0]


def test_new_changelogs_are_fetched_down_to_stored_ground(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    run = SyncRun(tmp_path, [source(sim)])
    run.sync()
    sim.add_changelogs(130)
    sim.requests.clear()
    report = run.sync()[SOURCE]
    assert report.new == 130
    # Page 2 holds the first stored ids: the walk ends there, not at the end of the list.
    assert offsets(changelog_requests(sim)) == [0, 100]
    assert set(stored_changelogs(run)) == vendor_ids(sim)


def test_rows_written_while_paging_are_neither_lost_nor_doubled(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    counts = Counts()
    run = SyncRun(tmp_path, [source(sim)], batch_hooks=[counts])
    before = vendor_ids(sim)
    sim.insert_per_page = 7  # every page pushes the rest down by 7: pages overlap
    assert run.sync()[SOURCE].ok
    assert before <= set(stored_changelogs(run))
    # Backfill, then an incremental poll of 150 new rows, also while rows keep arriving.
    sim.add_changelogs(150)
    sim.insert_per_page = 30
    assert run.sync()[SOURCE].ok
    sim.insert_per_page = 0
    assert run.sync()[SOURCE].ok
    stored = stored_changelogs(run)
    assert sorted(stored) == sorted(vendor_ids(sim))
    assert counts.new == len(stored) == len(sim.changelogs)
    # No row was handed to the store twice, though pages repeated rows.
    assert counts.unchanged == 0


def test_the_time_floor_ends_a_walk_that_meets_no_stored_id(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    run = SyncRun(tmp_path, [source(sim)])
    run.sync()
    with run.store.transaction() as db:  # as if the stored rows had been pruned
        db.execute("DELETE FROM entries")
    sim.requests.clear()
    run.sync()
    # Page 1 already reaches rows older than the watermark minus 5 minutes.
    assert offsets(changelog_requests(sim)) == [0]


def _arrive(sim: PegasusSimulator, kind: str, low: datetime) -> None:
    if kind == "new on top":
        sim.add_changelogs(30)
    elif kind == "late, below the resume point":
        # Written now with an older system_time: the anchor moves less than `total` grew.
        sim.add_changelogs(5, at=low - timedelta(seconds=1), spread=timedelta(minutes=1))
    elif kind == "oldest pruned":
        with sim.lock:
            for record in sorted(sim.changelogs, key=lambda r: r["system_time"])[:20]:
                sim.changelogs.remove(record)


@pytest.mark.parametrize(
    ("cut", "at", "arrivals"),
    [
        ("crash", 2, "none"),
        ("crash", 2, "late, below the resume point"),
        ("crash", 4, "new on top"),
        ("crash", 4, "oldest pruned"),
        ("HTTP 403", 1, "none"),
        ("HTTP 403", 1, "new on top"),
        ("HTTP 400", 3, "late, below the resume point"),
        ("HTTP 400", 3, "oldest pruned"),
    ],
)
def test_a_poll_cut_off_between_batches_loses_nothing(
    tmp_path: Path, sim: PegasusSimulator, cut: str, at: int, arrivals: str
) -> None:
    status = int(cut.split()[1]) if cut.startswith("HTTP") else 0
    if status:
        # The page after the `at`-th answers the error. Armed by request count, not from a
        # commit hook: the engine fetches the next page while it commits the last.
        fail_changelogs_request(sim, at + 1, status)
    run = SyncRun(tmp_path, [source(sim)], batch_hooks=[Counts(fail_at=None if status else at)])
    first = run.sync()[SOURCE]
    sim.handle = type(sim).handle.__get__(sim)  # type: ignore[method-assign]
    assert first.error is not None and ("crash" in first.error or f"HTTP {status}" in first.error)
    committed = at - 1 if cut == "crash" else at
    resume = run.cursor(SOURCE)["changelogs"]["resume"]
    assert resume["offset"] == 100 * committed
    assert len(stored_changelogs(run)) == 100 * committed

    _arrive(sim, arrivals, datetime.fromisoformat(resume["low"]))
    sim.requests.clear()
    second = run.sync()[SOURCE]
    assert second.ok, second.error
    assert vendor_ids(sim) <= set(stored_changelogs(run))
    assert run.cursor(SOURCE)["changelogs"]["resume"] is None
    # The gap was resumed, not re-read from the top: only the walk of the new top asks offset 0.
    asked = offsets(changelog_requests(sim))
    assert asked.count(0) == 1 and asked[-1] == 0
    if arrivals in ("none", "new on top"):
        # One row of overlap; when rows arrived, a probe first and then past them.
        start, grown = 100 * committed - 1, 30 if arrivals == "new on top" else 0
        gap = [start, *([start + grown] if grown else [])]
        gap += range(gap[-1] + 100, 350 + grown, 100)
        assert asked == [*gap, 0]


# -- modifications ------------------------------------------------------------------------


@pytest.fixture
def big() -> Iterator[PegasusSimulator]:
    with PegasusSimulator(records=600, section_size=250) as s:
        yield s


def test_modifications_walk_every_section_and_pointer(
    tmp_path: Path, big: PegasusSimulator
) -> None:
    run = SyncRun(tmp_path, [source(big, modifications=[{"resource": "vehicles"}])])
    report = run.sync()[SOURCE]
    assert report.ok, report.error
    expected = expected_modifications(big, "vehicles")
    assert sorted(stored_modifications(run)) == sorted(expected)
    # One request touching several objects stays several entries.
    assert len({n.split(":")[0] for n in expected}) < len(expected)

    requests = modification_requests(big)
    by_section: dict[int, list[int]] = {}
    for r in requests:
        assert (r.arg("resource"), r.arg("limit")) == ("vehicles", "100")
        by_section.setdefault(int(r.arg("section") or 0), []).append(int(r.arg("pointer") or 0))
    assert sorted(by_section) == [1, 2, 3]
    assert all(pointers[0] == 0 for pointers in by_section.values())  # reset per section
    assert any(len(pointers) > 1 for pointers in by_section.values())  # pointers followed


def test_modification_boundary_repeats_are_stored_once(
    tmp_path: Path, big: PegasusSimulator
) -> None:
    counts = Counts()
    run = SyncRun(
        tmp_path, [source(big, modifications=[{"resource": "vehicles"}])], batch_hooks=[counts]
    )
    run.sync()
    # The simulator did repeat the last item of a page as the first of the next one.
    follow = next(r for r in modification_requests(big) if r.arg("pointer") != "0")
    query = {k: v[0] for k, v in follow.query.items()}
    headers = {"Authenticate": big.token}
    url = f"{big.api_url}/changelogs/modifications"
    second = httpx.get(url, params=query, headers=headers).json()["data"]
    first = httpx.get(url, params={**query, "pointer": "0"}, headers=headers).json()["data"]
    assert first[-1] == second[0]

    mods = stored_modifications(run)
    assert len(mods) == len(set(mods)) == len(expected_modifications(big, "vehicles"))
    assert counts.unchanged == 0  # no repeat even reached the store


def test_modifications_window_overlaps_the_last_one(tmp_path: Path, big: PegasusSimulator) -> None:
    item = {"resource": "vehicles", "changes": ["properties.OrderNumber"], "ids": [7, 8]}
    run = SyncRun(tmp_path, [source(big, modifications=[item])])
    run.sync()
    first = modification_requests(big)[0]
    assert (first.arg("changes"), first.arg("ids")) == ("properties.OrderNumber", "7,8")
    start, end = (datetime.fromisoformat(first.arg(k) or "") for k in ("from", "to"))
    assert end - start == timedelta(days=30)
    assert abs(datetime.now(UTC) - end) < timedelta(seconds=30)

    # Written after the first poll, but timed before its `to`: the overlap catches it.
    late = put_vehicle(big, 7, end - timedelta(minutes=2))
    fresh = put_vehicle(big, 8, datetime.now(UTC) - timedelta(seconds=2))
    big.requests.clear()
    report = run.sync()[SOURCE]
    [again] = modification_requests(big)
    assert datetime.fromisoformat(again.arg("from") or "") == end - timedelta(minutes=5)
    assert report.new == 4  # each change as a changelog and as a modification
    assert {f"{late['id']}:7", f"{fresh['id']}:8"} <= set(stored_modifications(run))
    expected = expected_modifications(
        big, "vehicles", changes=("properties.OrderNumber",), ids=(7, 8)
    )
    assert set(stored_modifications(run)) == expected


def test_modifications_cut_off_mid_walk_are_walked_again(
    tmp_path: Path, big: PegasusSimulator
) -> None:
    # Six changelog pages, then modification pages: fail the second of those.
    run = SyncRun(
        tmp_path,
        [source(big, modifications=[{"resource": "vehicles"}])],
        batch_hooks=[Counts(fail_at=8)],
    )
    assert run.sync()[SOURCE].error is not None
    assert run.cursor(SOURCE)["modifications"] == {}
    assert 0 < len(stored_modifications(run)) < len(expected_modifications(big, "vehicles"))
    assert run.sync()[SOURCE].ok
    assert set(stored_modifications(run)) == expected_modifications(big, "vehicles")
    assert list(run.cursor(SOURCE)["modifications"]) == ["resource=vehicles"]


# -- authentication -----------------------------------------------------------------------


def test_a_token_is_sent_as_authenticate_without_login(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    table = {k: v for k, v in source(sim).items() if k not in ("username", "password")}
    report = SyncRun(tmp_path, [{**table, "token": sim.token}]).sync()[SOURCE]
    assert report.ok, report.error
    assert logins(sim) == 0
    assert {r.header("Authenticate") for r in sim.requests} == {sim.token}


def test_a_refused_login_names_the_user_and_quotes_the_vendor_text(
    tmp_path: Path, sim: PegasusSimulator
) -> None:
    report = SyncRun(tmp_path, [source(sim, password="wrong-password")]).sync()[SOURCE]
    assert report.error is not None
    assert "login" in report.error and sim.username in report.error
    assert "Invalid username or password" in report.error
    assert (logins(sim), changelog_requests(sim)) == (1, [])


def test_a_bad_token_fails_without_logging_in(tmp_path: Path, sim: PegasusSimulator) -> None:
    table = {k: v for k, v in source(sim).items() if k not in ("username", "password")}
    report = SyncRun(tmp_path, [{**table, "token": "not-the-token"}]).sync()[SOURCE]
    assert report.error is not None and "\n" not in report.error
    assert "token" in report.error and UNAUTHORIZED in report.error
    assert (logins(sim), len(changelog_requests(sim))) == (0, 1)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"username": None, "password": None}, "set `token`, or both"),
        ({"password": None}, "set `token`, or both"),
        ({"token": "t"}, "not both"),
        ({"token": "", "username": None}, "set `token`, or both"),
        ({"user_ids": ["user_id=16&write=vehicles,assets"]}, "plain user id"),
        ({"modifications": [{"resource": "trucks"}]}, "modifications[0].resource"),
        ({"modifications": [{"resource": "vehicles", "change": ["x"]}]}, "unknown key"),
    ],
)
def test_invalid_options_are_config_errors(
    tmp_path: Path, keys: dict[str, Any], problem: str
) -> None:
    table = {
        "name": SOURCE,
        "provider": "pegasus",
        "base_url": "http://127.0.0.1:9/api",
        "username": "u",
        "password": "p",
        **keys,
    }
    with pytest.raises(ConfigError, match=re.escape(problem)):
        SyncRun(tmp_path, [{k: v for k, v in table.items() if v is not None}])


# -- mapping ------------------------------------------------------------------------------

RECORD = {
    "path": "/api/vehicles/123",
    "system_time": "2022-05-05T00:51:15.986524+00:00",
    "user_id": "user_id=16&write=vehicles,assets",
    "id": "ea975489-2fb6-4024-955b-011a9254ebfc",
    "method": "PUT",
    "request": {},
}


@pytest.mark.parametrize(
    ("response", "status", "shown", "error"),
    [
        ({"status": "200 OK", "status_code": 200}, Status.SUCCESS, " -> 200 OK", None),
        ({"status": "399 ODD", "status_code": 399}, Status.SUCCESS, " -> 399 ODD", None),
        (
            {"status": "400 BAD REQUEST", "status_code": 400, "data": {"message": "bad number"}},
            Status.FAILURE,
            " -> 400 BAD REQUEST",
            "bad number",
        ),
        (
            {"status": "500 INTERNAL SERVER ERROR", "status_code": "500"},
            Status.FAILURE,
            " -> 500 INTERNAL SERVER ERROR",
            "500 INTERNAL SERVER ERROR",
        ),
        ({"status_code": 404}, Status.FAILURE, " -> 404", "404"),
        (None, Status.SUCCESS, "", None),
    ],
)
def test_changelog_mapping(
    response: dict[str, Any] | None, status: Status, shown: str, error: str | None
) -> None:
    record = {**RECORD, "response": response} if response is not None else RECORD
    entry = changelog_entry(record)
    assert (entry.status, entry.error) == (status, error)
    assert entry.message == f"PUT /api/vehicles/123{shown}"
    assert entry.native_id == "ea975489-2fb6-4024-955b-011a9254ebfc"
    assert entry.timestamp == datetime(2022, 5, 5, 0, 51, 15, 986524, tzinfo=UTC)
    assert entry.raw == record


def test_modification_mapping() -> None:
    item = {
        "properties.OrderNumber": 8012635798,
        "$$user_id": "3",
        "$$id": "854fdd5b-330a-4632-b920-c6e43efc5158",
        "$$system_time": "2022-05-03T21:27:03.369956+00:00",
        "$$object": 1,
    }
    entry = modification_entry("vehicles", item)
    assert entry.native_id == "854fdd5b-330a-4632-b920-c6e43efc5158:1"
    assert (entry.status, entry.entity_type, entry.entity_id) == (Status.SUCCESS, "vehicles", "1")
    assert entry.message == "vehicles 1: properties.OrderNumber=8012635798"
    assert entry.timestamp == datetime(2022, 5, 3, 21, 27, 3, 369956, tzinfo=UTC)
    assert entry.raw == item
    other = modification_entry("vehicles", {**item, "$$object": 2})
    assert other.native_id != entry.native_id


def test_scoped_user_ids_stay_searchable(tmp_path: Path, sim: PegasusSimulator) -> None:
    run = SyncRun(tmp_path, [source(sim)])
    run.sync()
    scoped = {r["id"] for r in sim.changelogs if r["user_id"].startswith("user_id=16")}
    found = {r.native_id for r in run.rows(text="user_id=16&write=vehicles,assets")}
    assert found == scoped and scoped


def test_filters_are_passed_through(tmp_path: Path, sim: PegasusSimulator) -> None:
    table = source(sim, methods=["put", "delete"], path="^/api/vehicles", user_ids=[16, "3"])
    run = SyncRun(tmp_path, [table])
    assert run.sync()[SOURCE].ok
    request = changelog_requests(sim)[0]
    assert (request.arg("methods"), request.arg("path"), request.arg("user_ids")) == (
        "PUT,DELETE",
        "^/api/vehicles",
        "16,3",
    )
    wanted = {
        r["id"]
        for r in sim.changelogs
        if r["method"] in ("PUT", "DELETE")
        and r["path"].startswith("/api/vehicles")
        and r["user_id"] in ("user_id=16&write=vehicles,assets", "3")
    }
    assert set(stored_changelogs(run)) == wanted and wanted


# -- the demo -----------------------------------------------------------------------------


def test_demo_source_syncs_and_tick_adds_records(tmp_path: Path) -> None:
    with PegasusSimulator() as demo:
        run = SyncRun(tmp_path, [demo.demo_source("pegasus")])
        first = run.sync()["pegasus"]
        assert first.ok, first.error
        assert stored_modifications(run) and len(stored_changelogs(run)) == 600
        demo.tick()
        second = run.sync()["pegasus"]
        assert second.ok and second.new >= 1
        assert set(stored_changelogs(run)) == vendor_ids(demo)
