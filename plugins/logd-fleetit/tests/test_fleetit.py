"""The FleetIT provider against its simulator, through the real engine and store.

What every provider does is the contract suite's (`logd.plugin.contract`); these tests pin
FleetIT's own: the date-only window, headers, paging links and mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from logd_fleetit import FleetITSimulator
from logd_fleetit.provider import to_entry

from logd import Status
from logd.plugin.testing import SyncRun


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=250) as s:
        yield s


def test_a_new_record_between_syncs_appears(tmp_path: Path, sim: FleetITSimulator) -> None:
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])
    run.sync()
    [record] = sim.add_records(1, failure_rate=1.0)
    report = run.sync()["fleet"]
    assert (report.new, report.failures) == (1, 1)
    assert run.store.get(f"fleet:{record['id']}") is not None


def test_incremental_poll_asks_from_the_watermark_minus_lookback(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])
    run.sync()
    assert "timestamp_after" not in sim.requests[0].query
    newest = max(datetime.fromisoformat(r["timestamp"]) for r in sim.fleets["1"].records)
    sim.requests.clear()
    run.sync()
    expected = (newest - timedelta(days=1)).date().isoformat()
    assert {r.arg("timestamp_after") for r in sim.requests} == {expected}
    assert run.cursor("fleet") == {"watermark": newest.isoformat()}


def test_credentials_and_fleet_header_are_sent(tmp_path: Path, sim: FleetITSimulator) -> None:
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])
    run.sync()
    assert all(r.header("Authorization") == f"Bearer {sim.token}" for r in sim.requests)
    assert all(r.header("Fleet-Id") == "1" for r in sim.requests)


def test_next_link_to_another_host_gets_no_request(tmp_path: Path, sim: FleetITSimulator) -> None:
    with FleetITSimulator(records=0) as elsewhere:
        sim.next_base = elsewhere.base_url
        run = SyncRun(tmp_path, [sim.demo_source("fleet")])
        assert run.sync()["fleet"].new == 250
        assert elsewhere.requests == []  # paging was rebuilt on base_url
        assert len(sim.requests) == 3


def test_bad_token_error_quotes_the_vendor_text(tmp_path: Path, sim: FleetITSimulator) -> None:
    source = {**sim.demo_source("fleet"), "token": "wrong-token-value"}
    report = SyncRun(tmp_path, [source]).sync()["fleet"]
    assert report.error is not None
    assert "HTTP 401" in report.error and "Invalid token." in report.error


def test_mapping_failure_message_entity() -> None:
    base = {
        "id": 7,
        "timestamp": "2024-05-05T21:09:01.685651-04:00",
        "success": True,
        "response": {"message": "Success"},
        "details": {"payload": None, "error": None},
        "entity_type": "Vehicle",
        "entity_id": None,
    }
    ok = to_entry(base)
    assert (ok.status, ok.message, ok.entity_type, ok.native_id) == (
        Status.SUCCESS,
        "Success",
        "Vehicle",
        "7",
    )
    assert ok.timestamp == datetime(2024, 5, 6, 1, 9, 1, 685651, tzinfo=UTC)
    assert to_entry({**base, "success": False}).status is Status.FAILURE
    failed = to_entry({**base, "details": {"error": "Timeout"}})
    assert (failed.status, failed.error) == (Status.FAILURE, "Timeout")


def test_the_vendor_count_is_the_progress_total(tmp_path: Path, sim: FleetITSimulator) -> None:
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])
    seen = []
    report = run.engine.sync(
        [run.settings.source("fleet")], progress=lambda r: seen.append((r.seen, r.total))
    )[0]
    assert report.total == 250 and report.seen == 250
    assert seen[0] == (100, 250)
