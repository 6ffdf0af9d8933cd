"""The `http` provider through the real engine and store, against scripted APIs and its simulator.

`api` and `other` (conftest.py) are scripted APIs on two ports of 127.0.0.1; `other` stands
for a foreign origin that must never see a credential.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from logd_http import EventsSimulator

from logd.plugin.simulator import SimRequest, SimResponse
from logd.plugin.testing import SyncRun


def records(ids: range | list[int]) -> list[dict[str, Any]]:
    """Records with these ids, `id` minutes after 2026-01-01T00:00Z."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {"id": i, "at": (start + timedelta(minutes=i)).isoformat(), "msg": f"record {i}"}
        for i in ids
    ]


def sync(tmp_path: Path, source: dict[str, Any], **kw: Any) -> tuple[SyncRun, Any]:
    run = SyncRun(tmp_path, [source], **kw)
    return run, run.sync()[source["name"]]


@pytest.fixture
def events() -> Iterator[EventsSimulator]:
    with EventsSimulator(records=120) as sim:
        yield sim


# -- the example API: Link-header cursor tokens, epoch milliseconds, newest first -------------


def test_events_backfill_then_an_idle_poll_costs_one_request(
    tmp_path: Path, events: EventsSimulator
) -> None:
    run, report = sync(tmp_path, events.demo_source("events"))
    assert report.ok, report.error
    assert (report.new, report.pages) == (120, 3)  # 50 a page, next pages from Link only
    rows = {r.native_id: r for r in run.rows()}
    for event in events.events:
        row = rows[event["id"]]
        stamp = datetime.fromtimestamp(event["created"] / 1000, tz=UTC)
        assert datetime.fromisoformat(row.timestamp) == stamp
        expected = {"failed": "failure", "retrying": "pending"}.get(event["outcome"], "success")
        assert row.status == expected
        assert row.entity_id == event["endpoint"]["id"]
    newest = max(e["created"] for e in events.events)
    assert run.cursor("events") == {
        "watermark": datetime.fromtimestamp(newest / 1000, tz=UTC).isoformat()
    }

    events.requests.clear()
    idle = run.sync()["events"]
    # Newest first: the first page is all stored, so the walk stops there, changing nothing.
    assert (idle.new, idle.updated, idle.requests) == (0, 0, 1)
    assert events.requests[0].arg("since") == str(newest - 3_600_000)

    [added] = events.add_records(1)
    assert run.sync()["events"].new == 1
    assert run.store.get(f"events:{added['id']}") is not None


def test_a_walk_cut_short_does_not_stop_at_what_it_stored(
    tmp_path: Path, events: EventsSimulator
) -> None:
    run = SyncRun(tmp_path, [events.demo_source("events")])
    original = events.handle
    served = {"n": 0}

    def second_page_fails(request: SimRequest) -> SimResponse:
        served["n"] += 1
        if served["n"] == 2:
            return SimResponse.json({"error": {"message": "down"}}, 400)
        return original(request)

    events.handle = second_page_fails  # type: ignore[method-assign]
    first = run.sync()["events"]
    assert not first.ok and first.new == 50
    assert run.cursor("events") == {"incomplete": True}
    events.handle = original  # type: ignore[method-assign]
    second = run.sync()["events"]
    assert second.ok and second.new == 70  # walked past the 50 stored, not stopped at them
    assert run.count() == 120


# -- credentials stay with base_url's origin --------------------------------------------------


@pytest.mark.parametrize("style", ["link", "next_url"])
@pytest.mark.parametrize("auth", ["bearer", "query"])
def test_credentials_never_reach_another_origin(
    tmp_path: Path, api: Any, other: Any, style: str, auth: str
) -> None:
    def route(request: SimRequest) -> SimResponse:
        page = int(request.arg("page") or "1")
        body: dict[str, Any] = {"data": records(range(page * 10, page * 10 + 10))}
        headers = {}
        if page < 3:
            url = f"{other.base_url}/logs?page={page + 1}"
            if style == "link":
                headers["Link"] = f'<{url}>; rel="next"'
            else:
                body["next"] = url
        return SimResponse.json(body, headers=headers)

    api.route = route
    paging = {"link": {}} if style == "link" else {"next_url": {"path": "next"}}
    credentials = (
        {"bearer": {"token": "tok-123456"}}
        if auth == "bearer"
        else {"api_key": {"name": "api_key", "in": "query", "value": "key-123456"}}
    )
    _, report = sync(tmp_path, api.source(auth=credentials, paging=paging))
    assert report.ok, report.error
    assert report.new == 30
    assert other.requests == []  # rebuilt on base_url: only the query parameters were kept
    assert [r.arg("page") for r in api.requests] == [None, "2", "3"]
    for request in api.requests:
        if auth == "bearer":
            assert request.header("Authorization") == "Bearer tok-123456"
        else:
            assert request.query["api_key"] == ["key-123456"]


def test_a_same_origin_link_is_followed_whole(tmp_path: Path, api: Any) -> None:
    def route(request: SimRequest) -> SimResponse:
        if request.path == "/logs":
            link = f'<{api.base_url}/logs/more?after=9>; rel="next"'
            return SimResponse.json({"data": records(range(10))}, headers={"Link": link})
        return SimResponse.json({"data": records(range(10, 15))})

    api.route = route
    _, report = sync(tmp_path, api.source(auth={"bearer": {"token": "t0k3n"}}, paging={"link": {}}))
    assert report.ok and report.new == 15
    assert [(r.path, r.arg("after")) for r in api.requests] == [
        ("/logs", None),
        ("/logs/more", "9"),
    ]
    assert all(r.header("Authorization") == "Bearer t0k3n" for r in api.requests)


def test_a_query_key_is_masked_in_errors(tmp_path: Path, api: Any) -> None:
    api.route = lambda r: SimResponse.json({"detail": f"bad key {r.arg('k')}"}, 403)
    auth = {"api_key": {"name": "k", "in": "query", "value": "s3cr3t-key"}}
    _, report = sync(tmp_path, api.source(auth=auth))
    assert not report.ok
    assert "s3cr3t-key" not in report.error and "***" in report.error


# -- paging styles and their stop conditions --------------------------------------------------


def test_offset_paging_stops_at_the_total(tmp_path: Path, api: Any) -> None:
    def route(request: SimRequest) -> SimResponse:
        offset, limit = int(request.arg("skip") or 0), int(request.arg("take") or 0)
        return SimResponse.json({"data": records(range(25))[offset : offset + limit], "n": 25})

    api.route = route
    paging = {"offset": {"offset_param": "skip", "limit_param": "take", "limit": 10, "total": "n"}}
    _, report = sync(tmp_path, api.source(paging=paging))
    assert report.ok and report.new == 25
    assert [r.arg("skip") for r in api.requests] == ["0", "10", "20"]


def test_page_number_paging_stops_at_the_last_page(tmp_path: Path, api: Any) -> None:
    def route(request: SimRequest) -> SimResponse:
        page = int(request.arg("p") or 1)
        return SimResponse.json({"data": records(range(page * 5, page * 5 + 5)), "pages": 3})

    api.route = route
    paging = {"page": {"page_param": "p", "size_param": "", "size": 5, "total_pages": "pages"}}
    _, report = sync(tmp_path, api.source(paging=paging))
    assert report.ok and report.new == 15
    assert [r.arg("p") for r in api.requests] == ["1", "2", "3"]


def test_cursor_paging_in_a_post_body(tmp_path: Path, api: Any) -> None:
    def route(request: SimRequest) -> SimResponse:
        sent = request.json()
        assert sent["filter"] == {"kind": "sync"}
        after = sent.get("page", {}).get("after")
        start = 0 if after is None else int(base64.b64decode(after)) + 1
        rows = records(range(start, min(start + 10, 23)))
        token = base64.b64encode(str(rows[-1]["id"]).encode()).decode() if start + 10 < 23 else ""
        return SimResponse.json({"data": rows, "meta": {"after": token}})

    api.route = route
    request = {
        "path": "/logs",
        "method": "POST",
        "body": {"filter": {"kind": "sync"}},
        "params_in": "body",
    }
    paging = {"cursor": {"path": "meta.after", "param": "page.after"}}
    _, report = sync(tmp_path, api.source(request=request, paging=paging))
    assert report.ok, report.error
    assert report.new == 23 and len(api.requests) == 3
    assert all(r.method == "POST" for r in api.requests)


def test_a_cursor_that_does_not_advance_is_an_error_naming_the_url(
    tmp_path: Path, api: Any
) -> None:
    def route(request: SimRequest) -> SimResponse:
        start = 3 * len(api.requests)  # new records each time, the same cursor token
        return SimResponse.json({"data": records(range(start, start + 3)), "next": "same"})

    api.route = route
    paging = {"cursor": {"path": "next", "param": "c"}}
    _, report = sync(tmp_path, api.source(paging=paging))
    assert not report.ok
    assert "paging does not advance" in report.error
    assert f"{api.base_url}/logs" in report.error and "c=same" in report.error
    assert len(api.requests) == 2  # the third would repeat the second: never a loop


def test_the_same_page_again_is_an_error(tmp_path: Path, api: Any) -> None:
    api.route = lambda r: SimResponse.json({"data": records(range(3))})  # ignores offset
    _, report = sync(tmp_path, api.source(paging={"offset": {"limit": 3}}))
    assert not report.ok
    assert "answered the same 3 records as the page before" in report.error


# -- records and status ------------------------------------------------------------------------


def test_status_rules_in_order_and_field_fallbacks(tmp_path: Path, api: Any) -> None:
    rows = [
        {"id": "a", "at": "01.02.2026 10:00", "state": "ERR", "code": 200},
        {"id": "b", "at": "01.02.2026 10:01", "state": "ok", "code": 503},
        {"id": "c", "at": "01.02.2026 10:02", "state": "queued", "code": "201"},
        {"id": "d", "at": "01.02.2026 10:03", "state": "ok", "code": None, "note": ""},
    ]
    api.route = lambda r: SimResponse.json({"items": rows})
    source = api.source(
        records={
            "path": "items",
            "id": "id",
            "timestamp": {"path": "at", "format": "%d.%m.%Y %H:%M", "timezone": "Europe/Berlin"},
            "message": {"path": "note", "on_failure": "join(' ', ['code', to_string(code)])"},
            "error": {"path": "note", "only_on_failure": True, "default": "failed"},
        },
        status=[
            {"path": "state", "op": "in", "value": ["ERR", "FATAL"], "status": "failure"},
            {"path": "state", "op": "==", "value": "queued", "status": "pending"},
            {"path": "code", "op": ">=", "value": 500, "status": "failure"},
            {"path": "note", "op": "empty", "status": "success"},
        ],
    )
    run, report = sync(tmp_path, source)
    assert report.ok, report.error
    got = {r.native_id: (r.status, r.message, r.error, r.timestamp) for r in run.rows()}
    assert got == {
        "a": ("failure", "code 200", "failed", "2026-02-01T09:00:00.000000+00:00"),
        "b": ("failure", "code 503", "failed", "2026-02-01T09:01:00.000000+00:00"),
        "c": ("pending", "", None, "2026-02-01T09:02:00.000000+00:00"),
        "d": ("success", "", None, "2026-02-01T09:03:00.000000+00:00"),
    }


def test_a_record_that_cannot_be_mapped_is_quarantined_with_its_reason(
    tmp_path: Path, api: Any
) -> None:
    rows = records(range(4))
    rows[2]["at"] = "yesterday"
    rows[3]["id"] = None
    api.route = lambda r: SimResponse.json({"data": rows})
    run, report = sync(tmp_path, api.source(incremental={"param": "since"}))
    assert report.ok, report.error
    assert (report.new, report.invalid) == (2, 2)
    bad = {r.native_id: r for r in run.rows(statuses=["invalid"])}
    assert "unreadable timestamp at `at`" in bad["2"].error  # keyed by its id: a fix replaces it
    assert bad["2"].raw == rows[2]
    [no_id] = [r for k, r in bad.items() if k != "2"]
    assert "no usable id at `id`" in no_id.error
    # The cursor moved past the good records only.
    assert run.cursor("api")["watermark"] == "2026-01-01T00:01:00+00:00"


# -- incremental --------------------------------------------------------------------------------


def test_oldest_first_moves_the_cursor_with_every_page(tmp_path: Path, api: Any) -> None:
    def route(request: SimRequest) -> SimResponse:
        after = int(request.arg("after_id") or -1)
        page = int(request.arg("page") or 1)
        ids = [i for i in range(30) if i > after][(page - 1) * 10 : page * 10]
        if page == 3:
            return SimResponse.json({"detail": "down"}, 400)
        return SimResponse.json({"data": records(ids)})

    api.route = route
    source = api.source(
        paging={"page": {"size": 10}},
        incremental={"param": "after_id", "value": "id", "order": "oldest_first"},
    )
    run, report = sync(tmp_path, source)
    assert not report.ok and report.new == 20
    assert run.cursor("api") == {"max_id": 19}  # page 2 committed its cursor
    api.requests.clear()
    run.sync()
    assert api.requests[0].arg("after_id") == "19"


def test_the_watermark_minus_lookback_in_each_format(tmp_path: Path, api: Any) -> None:
    api.route = lambda r: SimResponse.json({"data": records(range(3))})
    for fmt, zone, expected in [
        ("iso", None, "2026-01-01T00:00:00+00:00"),
        ("date", None, "2026-01-01"),
        ("date", "America/New_York", "2025-12-31"),  # the API's day, not UTC's
        ("epoch_s", None, str(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()))),
        ("epoch_ms", None, str(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1000)),
    ]:
        name = f"s-{fmt.replace('_', '-')}-{bool(zone)}"
        incremental = {"param": "since", "format": fmt, "lookback": "2m"}
        if zone:
            incremental["timezone"] = zone
        source = api.source(name=name, incremental=incremental)
        run = SyncRun(tmp_path / name, [source])
        run.sync()
        api.requests.clear()
        run.sync()
        assert api.requests[0].arg("since") == expected, fmt
        run.close()


@pytest.mark.parametrize("auth", ["bearer", "query"])
def test_a_redirect_to_another_origin_gets_no_credential(
    tmp_path: Path, api: Any, other: Any, auth: str
) -> None:
    api.route = lambda r: SimResponse(302, headers={"Location": f"{other.base_url}/landing"})
    other.route = lambda r: SimResponse.json({"data": records(range(2))})
    credentials = (
        {"bearer": {"token": "tok-123456"}}
        if auth == "bearer"
        else {"api_key": {"name": "api_key", "in": "query", "value": "key-123456"}}
    )
    _, report = sync(tmp_path, api.source(auth=credentials, request={"params": {"x": 1}}))
    assert report.ok, report.error
    [hop] = other.requests
    assert hop.header("Authorization") is None
    assert "key-123456" not in str(hop.query) and hop.arg("api_key") is None


def test_skip_unchanged_costs_one_request_but_never_after_a_cut_walk(
    tmp_path: Path, api: Any
) -> None:
    rows = records(range(30))
    fail_at: dict[str, Any] = {"offset": None}

    def route(request: SimRequest) -> SimResponse:
        offset = int(request.arg("offset") or 0)
        if offset == fail_at["offset"]:
            fail_at["offset"] = None
            return SimResponse.json({"detail": "down"}, 400)
        return SimResponse.json({"data": rows[offset : offset + 10], "n": len(rows)})

    api.route = route
    source = api.source(
        paging={"offset": {"limit": 10, "total": "n"}},
        incremental={"skip_unchanged": True},
    )
    run, first = sync(tmp_path, source)
    assert first.ok and first.new == 30 and run.cursor("api")["total"] == 30
    assert run.sync()["api"].requests == 1  # idle: the total and the first page say so

    rows.append(records([30])[0])  # one more record, at the end of the listing ...
    fail_at["offset"] = 10  # ... and the walk that would find it is cut short
    assert not run.sync()["api"].ok
    assert run.cursor("api")["incomplete"] is True
    del rows[0]  # retention drops one: the total is the last complete walk's again
    report = run.sync()["api"]
    assert report.ok and report.new == 1 and report.requests == 3
    assert "incomplete" not in run.cursor("api")
