"""The Akinon provider against its simulator, through the real engine and store.

What every provider does is the contract suite's (`logd.plugin.contract`); these tests pin
Akinon's own: flows and log types, re-checked open logs, downloads, line logs and mapping.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from logd_akinon import Akinon, AkinonOptions, AkinonSimulator
from logd_akinon.records import DownloadError, decode_download, parse_created, status_of, to_entry
from logd_akinon.simlogs import zip_json
from pydantic import ValidationError

from logd import PollContext, SourceClient, Status
from logd.plugin.testing import SyncRun

ONE_FLOW = ("flow-orders",)


@pytest.fixture
def sim() -> Iterator[AkinonSimulator]:
    with AkinonSimulator(flows=ONE_FLOW, records=0, sub_logs=0, in_progress=0) as s:
        yield s


def source(sim: AkinonSimulator, **keys: Any) -> dict[str, Any]:
    """The simulator's source, main logs only and no line logs unless a test says so."""
    return {**sim.demo_source("ak"), "log_types": [1], "line_logs": False, **keys}


def list_requests(sim: AkinonSimulator) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (r.arg("flowId"), r.arg("log_type"), r.arg("page"))
        for r in sim.requests_to("/logs")
        if r.path == "/logs"
    ]


def downloads_of(sim: AkinonSimulator, log_id: int) -> int:
    return sum(r.arg("id") == str(log_id) for r in sim.requests_to("/logs/download"))


def test_multi_flow_backfill_is_exact(tmp_path: Path) -> None:
    records = {"flow-orders": 230, "flow-products": 40, "flow-stocks": 0}
    with AkinonSimulator(records=records, sub_logs=15, in_progress=1) as sim:
        run = SyncRun(tmp_path, [source(sim, log_types=[1, 2])])
        report = run.sync()["ak"]
        assert report.ok, report.error

        main = {str(r["id"]): (f, r) for (f, t), rows in sim.logs.items() if t == 1 for r in rows}
        sub = {f"sub-{r['id']}" for (_, t), rows in sim.logs.items() if t == 2 for r in rows}
        # Sub logs are numbered like main logs: only distinct native ids keep them all.
        assert {s.removeprefix("sub-") for s in sub} & set(main)
        rows = {row.native_id: row for row in run.rows()}
        assert set(rows) == set(main) | sub
        assert report.new == len(main) + len(sub) == 231 + 41 + 1 + 45
        # 231 main logs of flow-orders are three pages; every other walk is one.
        assert sorted(list_requests(sim)) == sorted(
            [("flow-orders", "1", p) for p in "123"]
            + [
                (f, t, "1")
                for f in ("flow-orders", "flow-products", "flow-stocks")
                for t in "12"
                if (f, t) != ("flow-orders", "1")
            ]
        )
        for nid, (flow, record) in main.items():
            row = rows[nid]
            assert (row.entity_type, row.entity_id, row.raw) == ("flow", flow, record)
            assert row.status == {1: "pending", 2: "success", 3: "failure"}[record["status"]]


def test_an_empty_result_answered_404_is_not_an_error(tmp_path: Path) -> None:
    flows = ("flow-empty", "flow-orders")
    with AkinonSimulator(flows=flows, records={"flow-orders": 5}, sub_logs=0, in_progress=0) as sim:
        run = SyncRun(tmp_path, [source(sim)])
        report = run.sync()["ak"]
        # The empty flow comes first: an error there would have stopped the poll.
        assert report.ok, report.error
        assert list_requests(sim) == [("flow-empty", "1", "1"), ("flow-orders", "1", "1")]
        assert run.count() == 5
        assert run.cursor("ak")["flows"]["flow-empty"]["1"] == {"open": {}}
        assert run.sync()["ak"].ok


def test_an_in_progress_log_that_ends_failed_is_stored_as_a_failure(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    now = datetime.now(UTC)
    running = sim.start_log(at=now - timedelta(hours=3))
    # 120 newer logs over the last two hours push it to page 2, past the overlap.
    sim.add_logs(120, at=now, spread=timedelta(hours=2), failure_rate=0)
    run = SyncRun(tmp_path, [source(sim)])
    assert run.sync()["ak"].ok
    nid = str(running["id"])
    assert run.store.get(f"ak:{nid}").status == "pending"  # type: ignore[union-attr]
    assert nid in run.cursor("ak")["flows"]["flow-orders"]["1"]["open"]

    sim.finish_log(running["id"], failed=True, error="Order 4711 rejected: credit limit")
    sim.requests.clear()
    report = run.sync()["ak"]
    assert report.ok, report.error
    assert report.failures == 1
    row = run.store.get(f"ak:{nid}")
    assert row is not None and row.status == "failure"
    assert "credit limit" in json.dumps(row.details)
    changes = run.store.db.execute(
        "SELECT old_status, new_status FROM status_changes WHERE native_id = ?", [nid]
    ).fetchall()
    assert changes == [("pending", "failure")]
    assert list_requests(sim) == [("flow-orders", "1", "1"), ("flow-orders", "1", "2")]
    assert run.cursor("ak")["flows"]["flow-orders"]["1"]["open"] == {}


def test_error_text_found_only_in_the_download_is_searchable(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    [failed] = sim.add_logs(1, failure_rate=1, error="Credit limit exceeded for QX-55821")
    sim.add_logs(5, failure_rate=1)
    sim.add_logs(5, failure_rate=0)
    run = SyncRun(tmp_path, [source(sim)])
    assert run.sync()["ak"].ok

    [row] = run.rows(text="QX-55821")
    assert row.native_id == str(failed["id"]) and row.status == "failure"
    assert "QX-55821" not in json.dumps(row.raw)
    assert row.details["file"].endswith(".json")
    assert row.details["log"]["errors"][0]["message"] == "Credit limit exceeded for QX-55821"
    downloads = sim.requests_to("/logs/download")
    assert len(downloads) == 6  # failed logs only
    first = next(r for r in downloads if r.arg("id") == str(failed["id"]))
    assert (first.arg("flowId"), first.arg("projectid"), first.arg("projectslug")) == (
        "flow-orders",
        sim.project_id,
        sim.project_slug,
    )
    token = first.header("Authentication")
    assert token and first.header("Authorization") == f"Bearer {token}"


@pytest.mark.parametrize("kind", ["base64", "zip", "nojson", "http"])
def test_a_bad_download_is_a_warning_and_is_retried_next_poll(
    tmp_path: Path, sim: AkinonSimulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "http":
        sim.fail_next(400, body="Log file is not ready", path="/logs/download")
    else:
        sim.corrupt_downloads(kind)
    [failed] = sim.add_logs(1, failure_rate=1, error="Warehouse W7 unreachable")
    nid = str(failed["id"])
    run = SyncRun(tmp_path, [source(sim)])

    report = run.sync()["ak"]
    assert report.ok, report.error
    row = run.store.get(f"ak:{nid}")
    assert row is not None and row.status == "failure" and row.details is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"log {nid}" in w and "download failed" in w for w in warned), warned
    assert nid in run.cursor("ak")["followups"]

    assert run.sync()["ak"].ok
    assert run.rows(text="W7")[0].native_id == nid
    assert run.cursor("ak")["followups"] == {}
    assert downloads_of(sim, failed["id"]) == 2
    run.sync()
    assert downloads_of(sim, failed["id"]) == 2  # done, not fetched again


def test_a_login_token_is_masked_in_errors(tmp_path: Path, sim: AkinonSimulator) -> None:
    sim.next_tokens = ["tok-6c1e0f9b2a"]
    sim.fail_next(400, body="token tok-6c1e0f9b2a may not read this project", path="/logs")
    run = SyncRun(tmp_path, [source(sim)])
    first = run.sync()["ak"]  # logged in during this very poll
    assert first.error is not None and "token *** may not read" in first.error
    sim.fail_next(400, body="token tok-6c1e0f9b2a may not read this project", path="/logs")
    second = run.sync()["ak"]  # the token remembered from the poll before
    assert second.error is not None and "token *** may not read" in second.error
    assert sim.logins == 1


def test_a_configured_token_needs_no_login_and_is_not_renewed(tmp_path: Path) -> None:
    with AkinonSimulator(flows=ONE_FLOW, records=3, api_token="tok-3f9a2c") as sim:
        keys = source(sim, token="tok-3f9a2c")
        del keys["username"], keys["password"]
        run = SyncRun(tmp_path, [keys])
        assert run.sync()["ak"].ok and run.count() == 4
        sim.expire_tokens()
        report = run.sync()["ak"]
        assert report.error is not None and "token refused (HTTP 401)" in report.error
        assert "tok-3f9a2c" not in report.error
        assert sim.logins == 0


def test_an_idle_poll_costs_one_request_per_flow_and_log_type(tmp_path: Path) -> None:
    with AkinonSimulator(records=150, sub_logs=10, in_progress=1) as sim:
        run = SyncRun(tmp_path, [source(sim, log_types=[1, 2])])
        assert run.sync()["ak"].ok
        sim.requests.clear()
        report = run.sync()["ak"]
        assert report.ok and report.requests == 6
        assert sorted(list_requests(sim)) == sorted((f, t, "1") for f in sim.flows for t in "12")
        assert len(sim.requests) == 6  # no login, no download


def test_a_refused_login_quotes_the_vendor_text_and_lists_nothing(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    report = SyncRun(tmp_path, [source(sim, password="wrong-Pa55word")]).sync()["ak"]
    assert report.error is not None
    assert "login refused (HTTP 400): Invalid username or password." in report.error
    assert sim.requests_to("/logs") == []


def test_line_logs_of_a_failed_main_log_are_stored_and_linked(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    [failed] = sim.add_logs(1, failure_rate=1)
    sim.add_logs(3, failure_rate=0)
    run = SyncRun(tmp_path, [source(sim, line_logs=True)])
    assert run.sync()["ak"].ok

    lines = [
        r
        for r in sim.logs[("flow-orders", 3)]
        if r["original_filename_uuid"] == failed["filename_uuid"]
    ]
    assert lines
    stored = [r for r in run.rows() if r.native_id.startswith("line-")]
    assert {r.native_id for r in stored} == {f"line-{r['id']}" for r in lines}
    for row in stored:
        assert (row.entity_type, row.entity_id) == ("main_log", str(failed["id"]))
        assert row.details["main_log"] == str(failed["id"])
        assert row.details["main_filename_uuid"] == failed["filename_uuid"]
    asked = [r for r in sim.requests_to("/logs") if r.arg("log_type") == "3"]
    assert [r.arg("original_filename_uuid") for r in asked] == [failed["filename_uuid"]]


def test_a_walk_cut_short_keeps_the_old_watermark_and_is_walked_again(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    sim.add_logs(250, spread=timedelta(days=3), failure_rate=0)
    sim.fail_page(2, 400)
    run = SyncRun(tmp_path, [source(sim)])
    report = run.sync()["ak"]
    assert report.error is not None and "HTTP 400" in report.error
    assert run.count() == 100  # page 1 committed with its cursor
    assert "watermark" not in run.cursor("ak")["flows"]["flow-orders"]["1"]

    report = run.sync()["ak"]
    assert report.ok and run.count() == 250
    newest = max(parse_created(r["created"]) for r in sim.logs[("flow-orders", 1)])
    assert run.cursor("ak")["flows"]["flow-orders"]["1"]["watermark"] == newest.isoformat()


def test_next_links_to_another_host_are_never_requested(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    sim.add_logs(150, failure_rate=0)
    with AkinonSimulator(flows=ONE_FLOW, records=0) as elsewhere:
        sim.next_base = elsewhere.base_url
        run = SyncRun(tmp_path, [source(sim)])
        assert run.sync()["ak"].ok and run.count() == 150
        assert elsewhere.requests == []


def test_logs_served_out_of_order_are_noticed_and_walked_to_the_end(
    tmp_path: Path, sim: AkinonSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.add_logs(150, spread=timedelta(days=3), failure_rate=0)
    sim.oldest_first = True
    run = SyncRun(tmp_path, [source(sim)])
    assert run.sync()["ak"].ok
    [new] = sim.add_logs(1, failure_rate=0)
    report = run.sync()["ak"]
    # Page 1 is all old logs; stopping there would miss the new one on page 2.
    assert report.ok and report.new == 1
    assert run.store.get(f"ak:{new['id']}") is not None
    assert any("not newest first" in r.getMessage() for r in caplog.records)


def test_a_log_unfinished_for_longer_than_recheck_for_is_let_go(
    tmp_path: Path, sim: AkinonSimulator
) -> None:
    stuck = sim.start_log(at=datetime.now(UTC) - timedelta(days=6))
    sim.add_logs(150, spread=timedelta(days=2), failure_rate=0)
    run = SyncRun(tmp_path, [source(sim)])
    assert run.sync()["ak"].ok
    cursor = run.cursor("ak")
    assert str(stuck["id"]) in cursor["flows"]["flow-orders"]["1"]["open"]

    # Two days later (by the poll's clock) it has been unfinished for eight days.
    options = AkinonOptions.model_validate(
        {k: v for k, v in source(sim).items() if k not in ("name", "provider", "interval")}
    )
    ctx = PollContext(
        source="ak",
        options=options,
        client=SourceClient("ak", sim.base_url),
        cursor=cursor,
        log=logging.getLogger("test"),
        now=lambda: datetime.now(UTC) + timedelta(days=2),
    )
    sim.requests.clear()
    batches = list(Akinon().poll(ctx))
    assert batches[-1].cursor is not None
    assert batches[-1].cursor["flows"]["flow-orders"]["1"]["open"] == {}
    assert any(
        f"log {stuck['id']}" in w and "no longer re-checked" in w
        for b in batches
        for w in b.warnings
    )
    assert list_requests(sim) == [("flow-orders", "1", "1")]  # the walk no longer reaches it


# -- mapping, parsing and options ------------------------------------------------------------


def test_created_is_read_as_epoch_ms_or_a_datetime_string() -> None:
    moment = datetime(2024, 5, 6, 1, 9, 1, 685000, tzinfo=UTC)
    assert parse_created("1714957741685") == moment
    assert parse_created(1714957741685) == moment
    assert parse_created("2024-05-06 01:09:01.685") == moment  # naive: UTC
    assert parse_created("2024-05-06T04:09:01.685+03:00") == moment
    istanbul = ZoneInfo("Europe/Istanbul")
    assert parse_created("2024-05-06 04:09:01.685", istanbul) == moment
    with pytest.raises(ValueError):
        parse_created(None)


@pytest.mark.parametrize(
    ("state", "status", "expected"),
    [
        (3, 3, Status.FAILURE),
        (2, 3, Status.FAILURE),
        (3, 1, Status.PENDING),
        (1, 2, Status.PENDING),
        (2, 1, Status.PENDING),
        (3, 2, Status.SUCCESS),
        (3, 4, Status.SUCCESS),
        ("3", "3", Status.FAILURE),
        (None, 2, Status.PENDING),
    ],
)
def test_status_mapping(state: Any, status: Any, expected: Status) -> None:
    assert status_of({"state": state, "status": status}) is expected


def test_native_ids_and_messages() -> None:
    record = {
        "id": 42,
        "created": "1714957741685",
        "state": 3,
        "status": 3,
        "process_group_name": "Order Export",
    }
    main = to_entry(record, log_type=1, flow_id="f1")
    assert (main.native_id, main.message, main.error) == ("42", "Order Export: Failed", "Failed")
    assert (
        to_entry({**record, "created": "2024-05-06 01:09:01"}, log_type=2, flow_id="f1").native_id
        == "sub-42"
    )
    line = to_entry(
        {**record, "created": "2024-05-06 01:09:01"}, log_type=3, flow_id="f1", main_log="7"
    )
    assert (line.native_id, line.entity_type, line.entity_id) == ("line-42", "main_log", "7")


def test_decode_download_reads_the_json_and_names_what_is_wrong() -> None:
    body = zip_json("abc.json", {"errors": [{"message": "boom"}]})
    assert decode_download(body) == {"file": "abc.json", "log": {"errors": [{"message": "boom"}]}}
    assert decode_download(json.dumps(body))["file"] == "abc.json"  # quoted JSON string
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("log.txt", "no JSON in here")
    no_json = base64.b64encode(buffer.getvalue()).decode()
    for bad, why in [("%%%", "not base64"), ("UEsDBA==", "not a zip"), (no_json, "no JSON")]:
        with pytest.raises(DownloadError, match=why):
            decode_download(bad)


def test_options_need_one_kind_of_credentials_and_a_slug_for_downloads() -> None:
    base = {"project_id": "p", "project_slug": "s", "flow_ids": ["f"]}
    ok = AkinonOptions.model_validate({**base, "username": "u", "password": "pw"})
    assert ok.log_types == [1] and ok.download_failed and not ok.line_logs and ok.overlap == 3600
    assert ok.base_url == "https://flow.entegrator.akinon.net:3000"
    for bad, text in [
        ({**base}, "username"),
        ({**base, "token": "t", "username": "u", "password": "p"}, "not both"),
        ({**base, "token": "t", "project_slug": None}, "project_slug"),
        ({**base, "token": "t", "timezone": "Mars/Olympus"}, "time zone"),
        ({**base, "token": "t", "log_types": [4]}, "log_types"),
    ]:
        with pytest.raises(ValidationError, match=text):
            AkinonOptions.model_validate(bad)
    no_downloads = {**base, "token": "t", "project_slug": None, "download_failed": False}
    assert AkinonOptions.model_validate(no_downloads).project_slug is None
