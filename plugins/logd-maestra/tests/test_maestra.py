"""The Maestra provider against its simulator, through the real engine and store.

What every provider does is the contract suite's (`logd.plugin.contract`); these tests pin
Maestra's own: export windows and slots, status checks, parts, filters and mapping.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from logd_maestra import MaestraOptions, MaestraSimulator
from logd_maestra.csvparts import read_part
from logd_maestra.export import Window
from logd_maestra.provider import floor_minute, split
from logd_maestra.records import to_entry
from logd_maestra.simdata import PATH
from logd_maestra.simfiles import render_part
from pydantic import ValidationError

from logd import ProtocolError, SourceError, Status
from logd.plugin.testing import SyncRun
from logd.store.interface import BatchResult, BatchTransaction

NOW = datetime.now(UTC)


@pytest.fixture
def sim() -> Iterator[MaestraSimulator]:
    # No default records: each test places its own, away from window edges.
    with MaestraSimulator(records=0, now=NOW, part_rows=300) as s:
        yield s


def source(sim: MaestraSimulator, **keys: Any) -> dict[str, Any]:
    """The simulator's source table with the provider's documented defaults, then `keys`."""
    table = {**sim.demo_source("mx"), "lag": "10m", "export_poll": "5s"}
    table.pop("backfill")
    return {**table, **keys}


def ids(rows: list[dict[str, str]]) -> set[str]:
    return {r["OperationLogTransactionId"] for r in rows}


def vendor(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M")


def windows(sim: MaestraSimulator) -> list[tuple[str, str]]:
    return [(b["sinceDateTimeUtc"], b["tillDateTimeUtc"]) for b in sim.start_bodies()]


def test_three_window_backfill_is_complete_and_exact(tmp_path: Path, sim: MaestraSimulator) -> None:
    inside = sim.add_records(
        1500, end=NOW - timedelta(minutes=15), spread=timedelta(days=3) - timedelta(hours=1)
    )
    too_old = sim.add_records(5, end=NOW - timedelta(days=3, hours=2))
    too_new = sim.add_records(5, end=NOW - timedelta(minutes=3))  # inside `lag`: next time
    # The engine's clock stays at the simulator's NOW: a slow suite must not move `till`.
    run = SyncRun(tmp_path, [source(sim, backfill="3d", window="1d")], now=lambda: NOW)

    report = run.sync()["mx"]

    assert report.ok, report.error
    assert {r.native_id for r in run.rows()} == ids(inside)
    assert run.count() == len(inside) == report.new
    assert not ids(too_old + too_new) & {r.native_id for r in run.rows()}
    spans = windows(sim)
    assert len(spans) == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous
    till = datetime.strptime(spans[-1][1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    since = datetime.strptime(spans[0][0], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert till - since == timedelta(days=3)
    assert till == floor_minute(NOW - timedelta(minutes=10))
    assert run.cursor("mx") == {"since": till.isoformat()}
    assert sim.peak_running == 2  # the next window is prepared while one is read
    parts = [r.path for r in sim.files.requests]
    assert any(p.endswith(".csv.gz") for p in parts) and any(p.endswith(".csv") for p in parts)


def test_processing_call_that_fails_later_updates_its_entry(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    call = sim.make_record(NOW - timedelta(minutes=30), status="processing")
    sim.add([call])
    run = SyncRun(tmp_path, [source(sim, backfill="1d")])
    run.sync()
    entry_id = f"mx:{call['OperationLogTransactionId']}"
    stored = run.store.get(entry_id)
    assert stored is not None and stored.status == "pending"
    first_cursor = run.cursor("mx")

    sim.settle(call["OperationLogTransactionId"], "failed", "Loyalty engine rejected the order")
    report = run.sync()["mx"]

    assert report.ok, report.error
    assert (report.updated, report.failures) == (1, 1)  # a new failure: webhooks alert on it
    updated = run.store.get(entry_id)
    assert updated is not None and updated.status == "failure"
    assert updated.message == "Loyalty engine rejected the order"
    changes = run.store.db.execute(
        "SELECT old_status, new_status FROM status_changes WHERE native_id = ?",
        [call["OperationLogTransactionId"]],
    ).fetchall()
    assert changes == [("pending", "failure")]
    # The update came from exporting the trailing hour again (new minutes, if any, included).
    began = datetime.fromisoformat(first_cursor["since"])
    till = datetime.fromisoformat(run.cursor("mx")["since"])
    assert till >= began
    assert windows(sim)[-1] == (vendor(till - timedelta(hours=1)), vendor(till))


def test_cancelled_export_is_a_clear_error_and_the_cursor_stays(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    sim.add_records(
        200, end=NOW - timedelta(minutes=15), spread=timedelta(days=2) - timedelta(hours=1)
    )
    sim.cancel_next("Export queue overloaded, please retry later", skip=1)
    run = SyncRun(tmp_path, [source(sim, backfill="2d", window="1d")])

    report = run.sync()["mx"]

    assert report.error is not None and "\n" not in report.error
    assert (
        "cancelled" in report.error
        and "Export queue overloaded, please retry later" in report.error
    )
    first, second = windows(sim)  # the window after the cancelled one was not tried
    assert run.cursor("mx") == {"since": f"{first[1].replace(' ', 'T')}:00+00:00"}
    assert second[0] == first[1]
    assert 0 < run.count() < 200  # the first window's calls only

    retry = run.sync()["mx"]
    assert retry.ok, retry.error
    assert windows(sim)[2][0] == first[1]  # the cancelled window again, not skipped
    assert run.count() == 200


def test_an_idle_poll_is_one_export_of_the_trailing_hour(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    # Nothing new at Maestra between two polls ten minutes apart: the new ten minutes and the
    # trailing hour are one contiguous span, so the idle poll costs one export — a start, the
    # status checks until Ready (NotReady `ready_after` times) and the one part — not two.
    sim.add_records(40, end=NOW - timedelta(minutes=20), spread=timedelta(minutes=30))
    clock = [NOW]
    run = SyncRun(tmp_path, [source(sim, backfill="1d")], now=lambda: clock[0])
    assert run.sync()["mx"].ok
    cursor = datetime.fromisoformat(run.cursor("mx")["since"])
    started = len(sim.start_bodies())

    clock[0] += timedelta(minutes=10)
    idle = run.sync()["mx"]

    assert idle.ok, idle.error
    assert (idle.new, idle.updated) == (0, 0)
    till = cursor + timedelta(minutes=10)
    assert windows(sim)[started:] == [(vendor(till - timedelta(hours=1)), vendor(till))]
    assert idle.requests == 1 + (sim.ready_after + 1) + 1
    assert run.cursor("mx") == {"since": till.isoformat()}


def test_a_failed_export_of_trailing_hour_and_new_minutes_keeps_the_cursor(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    # The new minutes ride in the trailing export: a cancelled one must not move the cursor.
    clock = [NOW]
    run = SyncRun(tmp_path, [source(sim, backfill="1d")], now=lambda: clock[0])
    assert run.sync()["mx"].ok
    cursor = run.cursor("mx")
    sim.cancel_next("Export queue overloaded")

    clock[0] += timedelta(minutes=10)
    failed = run.sync()["mx"]

    assert failed.error is not None and "Export queue overloaded" in failed.error
    assert run.cursor("mx") == cursor
    assert run.sync()["mx"].ok
    moved = datetime.fromisoformat(cursor["since"]) + timedelta(minutes=10)
    assert run.cursor("mx") == {"since": moved.isoformat()}


def test_new_minutes_longer_than_the_trailing_span_are_not_exported_twice(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    # After three hours down, the new span already covers the trailing hour: one export.
    clock = [NOW]
    run = SyncRun(tmp_path, [source(sim, backfill="1d")], now=lambda: clock[0])
    assert run.sync()["mx"].ok
    cursor = datetime.fromisoformat(run.cursor("mx")["since"])
    started = len(sim.start_bodies())

    clock[0] += timedelta(hours=3)
    report = run.sync()["mx"]

    assert report.ok, report.error
    till = cursor + timedelta(hours=3)
    assert windows(sim)[started:] == [(vendor(cursor), vendor(till))]
    assert run.cursor("mx") == {"since": till.isoformat()}


class CrashOnCommit:
    """A batch hook that fails the `n`-th commit inside its transaction, as a crash would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def __call__(self, tx: BatchTransaction, result: BatchResult) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("simulated crash before commit")


@pytest.mark.parametrize("crash", ["commit of the last batch", "download of a part"])
def test_crash_mid_window_repeats_the_window_without_doubles(
    tmp_path: Path, sim: MaestraSimulator, crash: str
) -> None:
    rows = sim.add_records(1200, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    # 1200 rows: parts of 300, batches of 500, 500 and the last 200 with the window's cursor.
    hook = CrashOnCommit(3 if crash.startswith("commit") else 0)
    if crash.startswith("download"):
        sim.files.fail_part(3)  # rows 600-899: after the first batch committed
    run = SyncRun(tmp_path, [source(sim, backfill="1d")], batch_hooks=[hook])

    first = run.sync()["mx"]

    assert first.error is not None
    (window,) = windows(sim)
    assert run.cursor("mx") == {"since": f"{window[0].replace(' ', 'T')}:00+00:00"}
    committed = run.count()
    assert committed in (500, 1000)

    hook.n = 0
    second = run.sync()["mx"]

    assert second.ok, second.error
    assert windows(sim)[1][0] == window[0]  # the same window again
    assert run.count() == 1200 == len(ids(rows))
    assert (second.new, second.updated) == (1200 - committed, 0)


def test_slow_export_times_out_then_the_next_poll_follows_the_duplicate(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    rows = sim.add_records(50, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    sim.ready_after = 9  # NotReady nine times, Ready at the tenth check
    run = SyncRun(tmp_path, [source(sim, backfill="1d", export_timeout="30s")])

    first = run.sync()["mx"]

    assert first.error is not None and "not ready after 30s" in first.error
    assert f"POST {sim.base_url}/v3/operations/sync)" in first.error  # where it asked
    # 1 s, doubling up to export_poll between checks, then what is left of the limit.
    assert run.waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 3.0]
    assert run.cursor("mx") is None and run.count() == 0

    second = run.sync()["mx"]

    assert second.ok, second.error
    assert len(sim.exports) == 1  # Maestra answered isDuplicate: the same export, continued
    assert run.count() == len(rows)


@pytest.mark.parametrize("same_origin", [False, True], ids=["file host", "api origin"])
def test_credentials_never_reach_the_part_files(
    tmp_path: Path, sim: MaestraSimulator, same_origin: bool
) -> None:
    sim.add_records(700, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    sim.same_origin_files = same_origin  # even where the client would attach them by origin
    run = SyncRun(tmp_path, [source(sim, backfill="1d")])

    report = run.sync()["mx"]

    assert report.ok, report.error
    api = sim.requests_to(PATH)
    assert api and all(r.header("Authorization") == f"SecretKey {sim.secret_key}" for r in api)
    downloads = sim.requests_to("/exports/") if same_origin else sim.files.requests
    assert len(downloads) == 3
    assert all(r.header("Authorization") is None for r in downloads)
    assert sim.files.auth_seen == []
    assert run.count() == 700


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "plain"])
def test_a_part_is_read_whatever_the_chunking(compressed: bool) -> None:
    rows = [
        {"OperationLogTransactionId": "a-1", "OperationLogRequestBody": '{"note": "x;y"}'},
        {"OperationLogTransactionId": "a-2", "OperationLogResponseBody": "line 1\r\nline 2\u2028"},
        {"OperationLogTransactionId": "ü-3", "OperationLogErrorMessages": 'quote " inside'},
    ]
    data = b"".join(render_part(rows, gzip=compressed))
    assert data.startswith(b"\x1f\x8b" if compressed else b"\xef\xbb\xbf")
    if compressed:  # two gzip members back to back are still one file
        half = len(data) // 2
        raw = gzip.decompress(data)
        data = gzip.compress(raw[:half]) + gzip.compress(raw[half:])

    parsed = list(read_part(data[i : i + 1] for i in range(len(data))))  # byte by byte

    assert [r["OperationLogTransactionId"] for r in parsed] == ["a-1", "a-2", "ü-3"]
    assert "\ufeff" not in next(iter(parsed[0]))  # the BOM is not part of the first column
    assert parsed[0]["OperationLogRequestBody"] == '{"note": "x;y"}'
    assert parsed[1]["OperationLogResponseBody"] == "line 1\r\nline 2\u2028"
    assert parsed[2]["OperationLogErrorMessages"] == 'quote " inside'


def test_a_truncated_or_headless_part_is_a_protocol_error() -> None:
    data = b"".join(render_part([{"OperationLogTransactionId": "1"}], gzip=True))
    with pytest.raises(ProtocolError, match="ends early"):
        list(read_part([data[:-10]], part="part 1/1"))
    with pytest.raises(ProtocolError, match="no OperationLogTransactionId column"):
        list(read_part([b"Id;Status\r\n1;completed\r\n"], part="part 1/1"))


def test_validation_error_reaches_the_user_in_one_line(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    run = SyncRun(tmp_path, [source(sim, backfill="1d", operations=["No.Such.Method"])])

    report = run.sync()["mx"]

    assert report.error is not None and "\n" not in report.error
    assert "ValidationError" in report.error
    assert "'No.Such.Method' not found (at /operations/0/ids/systemName)" in report.error
    assert run.cursor("mx") is None


def test_429_without_retry_after_is_survived(tmp_path: Path, sim: MaestraSimulator) -> None:
    rows = sim.add_records(40, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    sim.fail_next(429, path=PATH, times=2)  # no Retry-After header
    run = SyncRun(tmp_path, [source(sim, backfill="1d")])

    report = run.sync()["mx"]

    assert report.ok, report.error
    assert report.retries == 2 and all(0 < w <= 30 for w in run.waits[:2])
    assert run.count() == len(rows)


def test_vendors_limit_of_two_running_exports_is_reported(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    sim.hold_slots(2)  # another client of the project runs two exports
    run = SyncRun(tmp_path, [source(sim, backfill="1d")])

    report = run.sync()["mx"]

    assert report.error is not None and "HTTP 429" in report.error
    assert "at most 2 per project" in report.error
    assert report.retries == 3  # the client backed off first: no Retry-After to go by
    assert run.cursor("mx") is None


def test_a_bad_secret_key_error_quotes_the_vendor_text(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    run = SyncRun(tmp_path, [source(sim, backfill="1d", secret_key="wrong-secret-key")])

    report = run.sync()["mx"]

    assert report.error is not None
    assert "HTTP 401" in report.error and "ProtocolError: Invalid secret key" in report.error


def test_filters_go_to_maestra_and_only_matching_calls_are_stored(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    rows = sim.add_records(300, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    keys = {
        "operations": ["Website.CreateOrder", "Pos.CalculateCart"],
        "endpoint_external_id": "Website",
        "result_state": "failed",
        "has_errors": True,
    }
    run = SyncRun(tmp_path, [source(sim, backfill="1d", **keys)])

    assert run.sync()["mx"].ok
    (body,) = sim.start_bodies()
    assert body["operations"] == [
        {"ids": {"systemName": "Website.CreateOrder"}},
        {"ids": {"systemName": "Pos.CalculateCart"}},
    ]
    assert body["endpoint"] == {"ids": {"externalId": "Website"}}
    assert (body["resultState"], body["hasErrors"]) == ("failed", True)
    expected = {
        r["OperationLogTransactionId"]
        for r in rows
        if r["OperationLogStatus"] == "failed"
        and r["OperationLogEndpointExternalId"] == "Website"
        and r["OperationLogOperationSystemName"] in keys["operations"]
    }
    assert expected and {r.native_id for r in run.rows()} == expected


def test_has_errors_is_searchable_and_not_a_failure(tmp_path: Path, sim: MaestraSimulator) -> None:
    when = NOW - timedelta(hours=2)
    warned = sim.make_record(when, warning="Unknown area code skipped")
    clean = sim.make_record(when)
    sim.add([warned, clean])
    run = SyncRun(tmp_path, [source(sim, backfill="1d")])
    run.sync()

    found = run.rows(text="hasErrors")

    assert [r.native_id for r in found] == [warned["OperationLogTransactionId"]]
    assert found[0].status == "success" and found[0].details["has_errors"] is True


def test_mapping_status_message_and_time() -> None:
    row = {
        "OperationLogTransactionId": "t-1",
        "OperationLogStartDateTimeUtc": "2024-05-06 01:09:01.685",
        "OperationLogStatus": "completed",
        "OperationLogHttpMethod": "POST",
        "OperationLogUrl": "https://api.maestra.io/v3/operations/sync",
        "OperationLogHasErrors": "false",
        "OperationLogHTTPStatusCode": "200",
        "OperationLogErrorMessages": "",
        "OperationLogOperationSystemName": "Website.CreateOrder",
    }
    ok = to_entry(row)
    assert (ok.status, ok.error, ok.entity_id) == (Status.SUCCESS, None, "Website.CreateOrder")
    assert ok.message == "POST https://api.maestra.io/v3/operations/sync -> 200"
    assert ok.timestamp == datetime(2024, 5, 6, 1, 9, 1, 685000, tzinfo=UTC)
    assert ok.raw == row
    assert to_entry({**row, "OperationLogStatus": "processing"}).status is Status.PENDING
    failed = to_entry({**row, "OperationLogStatus": "failed", "OperationLogHTTPStatusCode": "500"})
    assert (failed.status, failed.error) == (Status.FAILURE, failed.message)
    told = to_entry(
        {**row, "OperationLogStatus": "Failed", "OperationLogErrorMessages": "No\n  stock"}
    )
    assert (told.status, told.message, told.error) == (Status.FAILURE, "No stock", "No\n  stock")
    dotted = to_entry({**row, "OperationLogStartDateTimeUtc": "06.05.2024 01:09:01"})
    assert dotted.timestamp == datetime(2024, 5, 6, 1, 9, 1, tzinfo=UTC)


def test_windows_are_contiguous_minute_aligned_and_bounded() -> None:
    start = floor_minute(datetime(2026, 1, 1, 10, 7, 59, 999, tzinfo=UTC))
    assert start == datetime(2026, 1, 1, 10, 7, tzinfo=UTC)
    parts = split(start, start + timedelta(days=2, minutes=5), timedelta(days=1))
    assert [(w.since - start, w.till - start) for w in parts] == [
        (timedelta(0), timedelta(days=1)),
        (timedelta(days=1), timedelta(days=2)),
        (timedelta(days=2), timedelta(days=2, minutes=5)),
    ]
    assert split(start, start, timedelta(days=1)) == []
    base = {"endpoint_id": "e", "secret_key": "k", "operation": "o"}
    assert MaestraOptions.model_validate({**base, "window": "6h"}).window == 21600
    with pytest.raises(ValidationError, match="whole number of minutes"):
        MaestraOptions.model_validate({**base, "window": "90s"})


def test_generated_bulk_export_streams_through(tmp_path: Path) -> None:
    # The benchmark's 200k-row export, scaled down: rows exist only while a part is sent.
    with MaestraSimulator(records=0, part_rows=2500, gzip="always") as sim:
        sim.add_bulk(5000, NOW - timedelta(hours=20), NOW - timedelta(hours=1))
        run = SyncRun(tmp_path, [source(sim, backfill="1d")])

        report = run.sync()["mx"]

        assert report.ok, report.error
        assert run.count() == 5000 and report.pages == 11  # batches of 500, then the cursor
        assert len(run.rows(statuses=("failure",))) == 250  # every 20th row failed
        assert len(sim.files.requests) == 2


def test_a_stopping_daemon_ends_the_export_wait_without_moving_the_cursor() -> None:
    """On shutdown the wait for an export ends at once instead of polling until the timeout."""
    import threading

    from logd_maestra.export import Exporter

    calls: list[dict[str, object]] = []

    class Client:
        def post_json(self, path: str, **kwargs: object) -> dict[str, object]:
            calls.append(kwargs)
            return {"status": "Success", "exportResult": {"processingStatus": "NotReady"}}

    stop = threading.Event()
    stop.set()
    options = MaestraOptions.model_validate(
        {"endpoint_id": "e", "secret_key": "k", "operation": "op"}
    )
    exporter = Exporter(Client(), options, logging.getLogger("t"), stop.wait, stop.is_set)  # type: ignore[arg-type]
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    with pytest.raises(SourceError, match="stopped while export"):
        exporter.wait_until_ready("exp-1", window)
    assert len(calls) == 1


def status_checks(sim: MaestraSimulator) -> list[str]:
    """The export id of every status check, in order."""
    bodies = [r.json() for r in sim.requests_to(PATH, "POST") if r.body]
    return [b["exportId"] for b in bodies if isinstance(b, dict) and "exportId" in b]


def test_first_sync_uses_both_export_slots_and_checks_soon_then_less_often(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    rows = sim.add_records(400, end=NOW - timedelta(minutes=15), spread=timedelta(days=6))
    cursors: list[str] = []

    def record_cursor(tx: BatchTransaction, result: BatchResult) -> None:
        cursors.append(json.dumps(run.store.cursor(tx.source), sort_keys=True))

    table = source(sim)  # the documented defaults: backfill 7d, window 2d, export_poll 5s
    table.pop("window")
    run = SyncRun(tmp_path, [table], batch_hooks=[record_cursor], now=lambda: NOW)

    report = run.sync()["mx"]

    assert report.ok, report.error
    assert run.count() == len(rows)
    spans = windows(sim)
    assert len(spans) == 4 and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert sim.peak_running == 2  # two exports in flight, never more
    # Each export: checked at once, then after 1 s and 2 s (Ready at the third check). The
    # second export is checked on the same schedule while the first is awaited, so each
    # round of two costs 3 s of waiting, not 3 s per export.
    assert run.waits == [1.0, 2.0, 1.0, 2.0]
    checks = status_checks(sim)
    assert len(checks) == 12 and all(checks.count(e) == 3 for e in set(checks))
    # Windows are committed in order: the cursor only moves forward, to each window's end.
    moved = [json.loads(c)["since"] for c in cursors]
    assert moved == sorted(moved) and len(set(moved)) == 4  # each window's end in turn
    assert (
        moved[-1]
        == datetime.strptime(spans[-1][1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).isoformat()
    )


def test_a_slow_export_is_checked_ever_less_often_up_to_export_poll(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    sim.add_records(20, end=NOW - timedelta(minutes=15), spread=timedelta(hours=20))
    sim.ready_after = 7
    run = SyncRun(tmp_path, [source(sim, backfill="1d", export_poll="3s")])

    report = run.sync()["mx"]

    assert report.ok, report.error
    assert run.waits == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert len(status_checks(sim)) == 8


def test_a_slot_held_by_another_client_means_one_export_at_a_time(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    rows = sim.add_records(300, end=NOW - timedelta(minutes=15), spread=timedelta(days=3))
    sim.hold_slots(1)
    run = SyncRun(tmp_path, [source(sim, backfill="4d", window="2d")])

    report = run.sync()["mx"]

    assert report.ok, report.error
    assert run.count() == len(rows)
    assert report.retries == 0  # the refused second start waits for the first, no backoff
    assert len(windows(sim)) == 3  # window 2 refused once, started after window 1 was read
    assert sim.peak_running == 2  # ours and the other client's


def test_a_cancelled_second_export_is_raised_after_the_first_is_stored(
    tmp_path: Path, sim: MaestraSimulator
) -> None:
    sim.add_records(100, end=NOW - timedelta(minutes=15), spread=timedelta(days=3))
    sim.cancel_next("Export queue overloaded", skip=1)
    sim.ready_after = 0  # the second is cancelled while the first is still awaited
    run = SyncRun(tmp_path, [source(sim, backfill="4d", window="2d")])

    report = run.sync()["mx"]

    assert report.error is not None and "Export queue overloaded" in report.error
    first, _ = windows(sim)
    assert run.cursor("mx") == {"since": f"{first[1].replace(' ', 'T')}:00+00:00"}
    assert 0 < run.count() < 100
