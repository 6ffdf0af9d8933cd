"""OTLP export: stored entries as OpenTelemetry log records, sent to a real OTLP/HTTP receiver
on 127.0.0.1 that decodes them with opentelemetry-proto; the collector's answers (Retry-After,
partial success, permanent errors) and at-least-once delivery through the change sequence."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from logd.cli.main import cli
from logd.config.settings import OtlpExportConfig, load_settings
from logd.delivery.sinks import otlp
from logd.delivery.sinks.otlp import (
    SEVERITY,
    ExportResult,
    OtlpExporter,
    OtlpSink,
    encode_request,
    export_changes,
    logs_url,
    parse_request,
    serialize,
)
from logd.delivery.sinks.otlp_receiver import (
    Answer,
    OtlpReceiver,
    Received,
    attributes,
    plain,
)
from logd.errors import ConfigError, StoreError
from logd.store.interface import Lease, LeaseLost, Row

API_KEY = "otlp-api-key-5f1e2d3c4b5a"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def row(
    n: int,
    *,
    source: str = "fleet",
    provider: str = "fleetit",
    status: str = "failure",
    timestamp: str = "2026-02-28T10:20:30.123456+00:00",
    details: Any = None,
    raw: Any = None,
    message: str | None = None,
) -> Row:
    return Row(
        id=f"{source}:n{n}",
        source=source,
        provider=provider,
        native_id=f"n{n}",
        timestamp=timestamp,
        status=status,
        message=f"order {n} failed" if message is None else message,
        error="HTTP 500 from the ERP" if status == "failure" else None,
        entity_type="order",
        entity_id=f"SO-{n}",
        raw=raw if raw is not None else {"id": n},
        details=details,
    )


class MemoryFeed:
    """The store's change feed, in memory: every row a change, numbered from 1."""

    def __init__(self, rows: Sequence[Row] = ()) -> None:
        self.changes: list[tuple[int, Row]] = []
        self.positions: dict[str, int] = {}
        for r in rows:
            self.add(r)

    def add(self, r: Row) -> None:
        self.changes.append((len(self.changes) + 1, r))

    def changes_after(self, seq: int, *, limit: int) -> list[tuple[int, Row]]:
        return [c for c in self.changes if c[0] > seq][:limit]

    def sink_position(self, sink: str) -> int:
        return self.positions.get(sink, 0)

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        self.positions[sink] = seq


class Crash(Exception):
    """The process dying between a send and the position's move."""


class CrashingFeed(MemoryFeed):
    """Dies on the `crash_on`-th move of the position: that batch was sent, not recorded."""

    def __init__(self, rows: Sequence[Row], crash_on: int) -> None:
        super().__init__(rows)
        self.moves, self.crash_on = 0, crash_on

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        self.moves += 1
        if self.moves == self.crash_on:
            raise Crash
        super().set_sink_position(sink, seq)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def config(endpoint: str, **kw: Any) -> OtlpExportConfig:
    return OtlpExportConfig.model_validate(
        {"kind": "otlp", "name": "otel", "endpoint": endpoint, **kw}
    )


def exporter(endpoint: str, **kw: Any) -> OtlpExporter:
    return OtlpExporter(config(endpoint, **kw), clock=lambda: NOW)


# -- encoding, through the receiver ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_entries_arrive_decoded_with_resource_severity_times_body_and_attributes(
    rx: OtlpReceiver, fmt: str, compression: str
) -> None:
    details = {"request": {"url": "/orders", "tries": 3, "ok": False, "ratio": 0.5}}
    rows = [
        row(1, details=details, raw={"id": 1, "lines": [1, "two", None]}),
        row(2, source="shop", provider="akinon", status="success"),
        row(3, status="pending"),
    ]
    with exporter(rx.endpoint + "/", format=fmt, compression=compression) as ex:
        result = ex.send(rows)
    assert result == ExportResult("delivered", 3, status=200)
    (got,) = rx.wait_for(1)
    assert got.path == "/v1/logs"  # the base URL's trailing slash is not doubled
    assert got.format == fmt
    assert got.headers["content-type"] == {"protobuf": "application/x-protobuf"}.get(
        fmt, "application/json"
    )
    assert got.headers.get("content-encoding") == ("gzip" if compression == "gzip" else None)
    assert got.request is not None
    # One ResourceLogs per source, in the order the sources first appear.
    resources = [
        {a.key: plain(a.value) for a in r.resource.attributes} for r in got.request.resource_logs
    ]
    assert resources == [
        {"service.name": "logd", "logd.source": "fleet", "logd.provider": "fleetit"},
        {"service.name": "logd", "logd.source": "shop", "logd.provider": "akinon"},
    ]
    assert got.request.resource_logs[0].scope_logs[0].scope.name == "logd"
    records = {attributes(rec)["logd.entry_id"]: rec for _, rec in got.records()}
    assert list(records) == ["fleet:n1", "fleet:n3", "shop:n2"]
    first = records["fleet:n1"]
    # 2026-02-28T10:20:30.123456Z, to the nanosecond, in integer arithmetic.
    assert first.time_unix_nano == 1772274030_123456000
    assert first.observed_time_unix_nano == int(NOW.timestamp()) * 10**9
    assert (first.severity_number, first.severity_text) == (17, "ERROR")
    assert plain(first.body) == "order 1 failed"
    assert attributes(first) == {
        "logd.entry_id": "fleet:n1",
        "logd.status": "failure",
        "logd.native_id": "n1",
        "logd.error": "HTTP 500 from the ERP",
        "logd.entity.type": "order",
        "logd.entity.id": "SO-1",
        "logd.details": details,
        "logd.raw": {"id": 1, "lines": [1, "two", None]},
    }
    assert (records["shop:n2"].severity_number, records["fleet:n3"].severity_number) == (9, 9)
    if fmt == "json":
        # OTLP/JSON: lowerCamelCase names, enums as integers, 64-bit integers as strings.
        body = orjson.loads(got.body)
        record = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        assert record["severityNumber"] == 17
        assert record["timeUnixNano"] == "1772274030123456000"
        assert "observedTimeUnixNano" in record and "time_unix_nano" not in record


def test_severity_follows_the_status() -> None:
    rows = [row(i, status=s) for i, s in enumerate(["failure", "success", "pending", "invalid"])]
    request = encode_request(rows, observed_at=NOW)
    records = request.resource_logs[0].scope_logs[0].log_records
    assert [(r.severity_number, r.severity_text) for r in records] == [
        (17, "ERROR"),  # SEVERITY_NUMBER_ERROR in the OpenTelemetry logs data model
        (9, "INFO"),
        (9, "INFO"),
        (13, "WARN"),
    ]
    assert set(SEVERITY) == {"failure", "success", "pending", "invalid"}


def test_a_time_before_1970_is_sent_as_unknown_not_wrapped() -> None:
    request = encode_request([row(1, timestamp="1969-12-31T23:59:59+00:00")], observed_at=NOW)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.time_unix_nano == 0  # "unknown" in OTLP; the field is unsigned
    assert record.observed_time_unix_nano > 0


def test_a_huge_or_deep_record_is_bounded_and_marked_truncated() -> None:
    deep: Any = "bottom"
    for _ in range(20):
        deep = {"level": deep}
    raw = {
        "blob": "x" * 10_000_000,
        "many": {f"k{i}": i for i in range(100_000)},
        "deep": deep,
    }
    big = row(1, raw=raw, details=[{"n": i} for i in range(50_000)], message="m" * 1_000_000)
    request = encode_request([big], observed_at=NOW)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.ByteSize() < 200_000  # from ~12 MB of entry
    attrs = attributes(record)
    assert attrs["logd.truncated"] is True
    assert attrs["logd.entry_id"] == "fleet:n1"  # the small fields always come first
    assert len(attrs["logd.details"]) == 256  # MAX_ITEMS of a list
    assert plain(record.body).endswith("…") and len(plain(record.body)) == 32_768
    assert len(attrs["logd.raw"]["blob"]) == 4096 and attrs["logd.raw"]["blob"].endswith("…")
    assert len(attrs["logd.raw"]["many"]) == 256  # MAX_ITEMS of a map
    # Once the record's budget is spent, what follows is left out (and counted).
    wide = row(1, details=["z" * 5000] * 100, raw={"a": 1})
    record = encode_request([wide], observed_at=NOW).resource_logs[0].scope_logs[0].log_records[0]
    attrs = attributes(record)
    assert record.ByteSize() < 70_000 and len(attrs["logd.details"]) == 16
    assert record.dropped_attributes_count == 1 and "logd.raw" not in attrs
    nested = encode_request([row(2, raw={"deep": deep})], observed_at=NOW)
    kept = attributes(nested.resource_logs[0].scope_logs[0].log_records[0])["logd.raw"]
    for _ in range(8):  # MAX_DEPTH levels as maps, the rest as the JSON text of itself
        kept = kept.get("deep", kept.get("level"))
    assert isinstance(kept, str) and kept.startswith('{"level"')


def test_a_large_batch_is_split_under_the_request_size(rx: OtlpReceiver) -> None:
    rows = [row(i, raw={"text": "y" * 3000}) for i in range(40)]
    with OtlpExporter(config(rx.endpoint), max_request_bytes=32_000) as ex:
        result = ex.send(rows)
    assert result.outcome == "delivered" and result.records == 40
    got = rx.wait_for(4)
    assert len(got) >= 4
    assert all(len(r.body) < 40_000 for r in got)
    assert sorted(attributes(rec)["logd.native_id"] for _, rec in rx.records()) == sorted(
        f"n{i}" for i in range(40)
    )


def test_a_batch_is_encoded_one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    real = otlp.log_record
    monkeypatch.setattr(otlp, "log_record", lambda r, ns: encoded.append(1) or real(r, ns))
    sent: list[int] = []

    def collector(request: httpx.Request) -> httpx.Response:
        (resource,) = parse_request(request.content, "protobuf").resource_logs
        count = len(resource.scope_logs[0].log_records)
        # Records made so far: those sent, and at most the one that opens the next request.
        assert len(encoded) <= sum(sent) + count + 1
        sent.append(count)
        return httpx.Response(200)

    rows = [row(i, raw={"text": "y" * 3000}) for i in range(100)]
    ex = OtlpExporter(
        config("http://127.0.0.1:4318"),
        transport=httpx.MockTransport(collector),
        max_request_bytes=32_000,
    )
    with ex:
        assert ex.send(rows).outcome == "delivered"
    assert sum(sent) == 100 and len(sent) >= 10


def test_json_is_proto3_json_the_receiver_parses_back() -> None:
    request = encode_request([row(1, details={"nested": [1.5, True, None]})], observed_at=NOW)
    body = serialize(request, "json")
    assert set(orjson.loads(body)) == {"resourceLogs"}
    assert parse_request(body, "json") == request  # nothing lost on the way
    assert parse_request(serialize(request, "protobuf"), "protobuf") == request
    with pytest.raises(ValueError, match="not an OTLP json logs request"):
        parse_request(b"{not json", "json")


# -- the collector's answers ----------------------------------------------------------------


def test_429_is_retried_after_its_retry_after_seconds(rx: OtlpReceiver) -> None:
    rx.respond_with(Answer(429, retry_after="7"))
    feed = MemoryFeed([row(1), row(2)])
    sink = OtlpSink(config(rx.endpoint), feed, backoff=0.01)
    stop = threading.Event()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            stop.set()

    try:
        sink.run(stop, wait=wait)
    finally:
        sink.close()
    assert waits[0] >= 7  # the collector's wait, not the 10 ms backoff
    assert waits[1] == sink.idle  # then caught up
    assert [r.status for r in rx.received] == [429, 200]
    assert feed.sink_position("otel") == 2


def test_503_is_retried_after_its_retry_after_date(rx: OtlpReceiver) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    rx.respond_with(Answer(503, retry_after=format_datetime(when, usegmt=True)))
    feed = MemoryFeed([row(1)])
    sink = OtlpSink(config(rx.endpoint), feed, backoff=0.01)
    try:
        first = sink.export_due()
        assert first.halted is not None and first.halted.outcome == "retry"
        assert first.halted.status == 503
        assert 100 <= sink.delay(first) <= 121
        assert feed.sink_position("otel") == 0  # nothing moves until it is taken
        second = sink.export_due()
    finally:
        sink.close()
    assert second.halted is None and second.exported == 1
    assert feed.sink_position("otel") == 1


def test_retries_without_retry_after_back_off_exponentially(rx: OtlpReceiver) -> None:
    rx.respond_with(502, 504, 503)
    feed = MemoryFeed([row(1)])
    sink = OtlpSink(config(rx.endpoint), feed, backoff=1.0, max_backoff=3.0)
    delays = []
    try:
        for _ in range(3):
            delays.append(sink.delay(sink.export_due()))
    finally:
        sink.close()
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 1.5 <= delays[2] <= 3


def test_a_partial_success_is_logged_counted_and_not_retried(
    rx: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    rx.respond_with(Answer(rejected=2, error_message="2 records too old for the index"))
    feed = MemoryFeed([row(i) for i in range(5)])
    with exporter(rx.endpoint) as ex, caplog.at_level(logging.WARNING, "logd.export"):
        done = export_changes(feed, "otel", ex.send, batch_size=10)
    assert (done.exported, done.rejected, done.halted) == (3, 2, None)
    assert feed.sink_position("otel") == 5
    assert len(rx.received) == 1
    assert "rejected 2 of 5 records: 2 records too old for the index" in caplog.text


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_a_400_is_permanent_the_batch_is_skipped_with_the_collectors_reason(
    rx: OtlpReceiver, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    rx.respond_with(Answer(400, error_message="invalid log record"))
    feed = MemoryFeed([row(1), row(2), row(3)])
    with exporter(rx.endpoint, format=fmt) as ex, caplog.at_level(logging.ERROR, "logd.export"):
        done = export_changes(feed, "otel", ex.send, batch_size=2)
    # The first batch was refused for good; the export moved on to the next.
    assert (done.exported, done.rejected, done.batches) == (1, 2, 2)
    assert feed.sink_position("otel") == 3
    assert [r.status for r in rx.received] == [400, 200]
    assert "2 records refused for good, skipped: HTTP 400: invalid log record" in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_wrong_key_or_endpoint_blocks_the_export_without_skipping(
    rx: OtlpReceiver, status: int
) -> None:
    rx.respond_with(status)
    feed = MemoryFeed([row(1)])
    with exporter(rx.endpoint) as ex:
        done = export_changes(feed, "otel", ex.send, batch_size=10)
    assert done.halted is not None and done.halted.outcome == "blocked"
    assert "check the export's" in (done.halted.error or "")
    assert feed.sink_position("otel") == 0  # every entry is still to be exported


def test_a_redirect_is_not_followed(rx: OtlpReceiver) -> None:
    rx.respond_with(Answer(308, headers={"Location": "https://elsewhere.example/v1/logs"}))
    with exporter(rx.endpoint) as ex:
        result = ex.send([row(1)])
    assert result.outcome == "blocked"
    assert "redirect to https://elsewhere.example/v1/logs not followed" in (result.error or "")
    assert len(rx.received) == 1


def test_a_413_splits_the_batch_in_halves(rx: OtlpReceiver) -> None:
    rx.respond_with(413)
    with exporter(rx.endpoint) as ex:
        result = ex.send([row(i) for i in range(4)])
    assert result.outcome == "delivered" and result.records == 4
    assert [len(r.records()) for r in rx.received] == [4, 2, 2]


def test_network_errors_and_silence_are_retried_within_the_timeout() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with exporter(f"http://127.0.0.1:{port}") as ex:
        refused = ex.send([row(1)])
    assert refused.outcome == "retry" and "ConnectError" in (refused.error or "")
    with socket.socket() as silent:  # accepts the connection (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with exporter(endpoint, timeout=0.3) as ex:
            hung = ex.send([row(1)])
    assert hung.outcome == "retry"
    assert "ReadTimeout" in (hung.error or "")


def test_a_collector_answering_a_byte_at_a_time_is_cut_off_by_the_whole_request_timeout() -> None:
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def drip() -> None:
            conn, _ = server.accept()
            with conn:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000:
                    if stop.wait(0.05):  # each read gets a byte well within its own timeout
                        return
                    conn.sendall(bytes([byte]))

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        done: list[ExportResult] = []
        with exporter(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5) as ex:
            worker = threading.Thread(target=lambda: done.append(ex.send([row(1)])))
            worker.start()
            worker.join(20)  # the whole drip takes 50 s: only the request's deadline ends it
            bounded = not worker.is_alive()
            stop.set()
            worker.join(5)
        thread.join(5)
    assert bounded, "the request was not bounded by the export's timeout"
    assert done[0].outcome == "retry" and "Timeout" in (done[0].error or "")


def test_headers_reach_the_collector_and_never_show_in_errors_or_logs(
    rx: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # The collector echoes the key back: in an error, and in a partial success's message.
    rx.respond_with(
        Answer(401, error_message=f"unknown key Bearer {API_KEY}"),
        Answer(rejected=1, error_message=f"quota of {API_KEY} exceeded"),
    )
    cfg = config(rx.endpoint, headers={"Authorization": f"Bearer {API_KEY}", "X-Team": "ops"})
    feed = MemoryFeed([row(1)])
    with (
        OtlpExporter(cfg) as ex,
        caplog.at_level(logging.DEBUG),
    ):
        blocked = export_changes(feed, "otel", ex.send, batch_size=10)
        done = export_changes(feed, "otel", ex.send, batch_size=10)
        shown = repr(ex) + repr(cfg) + str(cfg.model_dump())
    assert [r.headers["authorization"] for r in rx.received] == [f"Bearer {API_KEY}"] * 2
    assert rx.received[0].headers["x-team"] == "ops"
    assert blocked.halted is not None
    assert blocked.halted.error == (
        "HTTP 401: unknown key ***; check the export's headers (the API key)"
    )
    assert done.rejected == 1
    for text in (blocked.halted.error, caplog.text, shown):
        assert API_KEY not in text


def test_the_sink_runs_until_closed_wakes_on_kick_and_survives_a_failing_round(
    rx: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    feed = MemoryFeed([row(1)])
    sink = OtlpSink(config(rx.endpoint), feed, idle=3600.0, backoff=0.01)
    stop = threading.Event()
    worker = threading.Thread(target=sink.run, args=(stop,))
    worker.start()
    try:
        assert wait_until(lambda: feed.sink_position("otel") == 1)
        feed.add(row(2))
        sink.kick()  # stored entries wake the idle wait (an hour) at once
        assert wait_until(lambda: feed.sink_position("otel") == 2)
        broken = feed.changes_after
        feed.changes_after = lambda seq, *, limit: 1 / 0  # type: ignore[assignment,method-assign]
        with caplog.at_level(logging.ERROR, "logd.export"):
            feed.add(row(3))
            sink.kick()
            assert wait_until(lambda: "round failed" in caplog.text)
            feed.changes_after = broken  # type: ignore[method-assign]
        # The next round, after a short backoff, sends it.
        assert wait_until(lambda: feed.sink_position("otel") == 3)
        assert "ZeroDivisionError" in caplog.text
    finally:
        sink.close()  # ends the run loop without `stop`
        worker.join(5)
    assert not worker.is_alive()
    assert feed.sink_position("otel") == 3


def test_close_ends_a_request_under_way_at_once_and_quietly(
    rx: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def hold(got: Received) -> None:
        arrived.set()
        release.wait(30)  # the collector answers only when the test says so

    rx.on_request = hold
    feed = MemoryFeed([row(1)])
    sink = OtlpSink(config(rx.endpoint, timeout=60), feed)
    worker = threading.Thread(target=sink.run, args=(threading.Event(),))
    try:
        with caplog.at_level(logging.WARNING, "logd.export"):
            worker.start()
            assert arrived.wait(10)
            sink.close()
            worker.join(10)  # not the 60 s timeout, nor the collector's answer
            assert not worker.is_alive()
    finally:
        release.set()
        worker.join(10)
    assert feed.sink_position("otel") == 0  # unanswered: sent again on the next start
    assert caplog.messages == []


def test_a_store_fault_is_one_line_and_the_round_is_retried(
    rx: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    class LockedFeed(MemoryFeed):
        def changes_after(self, seq: int, *, limit: int) -> list[tuple[int, Row]]:
            raise StoreError("the store is locked by another process; try again")

    sink = OtlpSink(config(rx.endpoint), LockedFeed([row(1)]), backoff=2.0)
    stop = threading.Event()
    waits: list[float] = []
    try:
        with caplog.at_level(logging.ERROR, "logd.export"):
            sink.run(stop, wait=lambda seconds: waits.append(seconds) or stop.set())
    finally:
        sink.close()
    assert caplog.messages == ["export otel: the store is locked by another process; try again"]
    assert "Traceback" not in caplog.text and waits == [4.0]


def test_a_blocked_export_waits_the_longest_backoff(rx: OtlpReceiver) -> None:
    rx.respond_with(401)
    sink = OtlpSink(config(rx.endpoint), MemoryFeed([row(1)]), max_backoff=120.0)
    try:
        done = sink.export_due()
        assert sink.delay(done) == 120.0
    finally:
        sink.close()


# -- at least once --------------------------------------------------------------------------


def test_a_crash_after_sending_and_before_moving_sends_that_batch_again(
    rx: OtlpReceiver,
) -> None:
    rows = [row(i) for i in range(10)]
    feed = CrashingFeed(rows, crash_on=2)  # batch 2 is sent, its move never recorded
    with exporter(rx.endpoint) as ex, pytest.raises(Crash):
        export_changes(feed, "otel", ex.send, batch_size=3)
    assert feed.sink_position("otel") == 3
    # Restarted: a new exporter (a new process) reads the position and goes on from it.
    with exporter(rx.endpoint) as ex:
        done = export_changes(feed, "otel", ex.send, batch_size=3)
    assert done.halted is None and feed.sink_position("otel") == 10
    ids = [attributes(rec)["logd.native_id"] for _, rec in rx.records()]
    assert sorted(set(ids)) == sorted(r.native_id for r in rows)  # none lost
    assert sorted(i for i in set(ids) if ids.count(i) > 1) == ["n3", "n4", "n5"]


def test_each_move_is_fenced_by_the_sinks_lease(rx: OtlpReceiver) -> None:
    class FencedFeed(MemoryFeed):
        def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
            if lease is None or lease.token != 2:
                raise LeaseLost("sink:otel passed to another holder")
            super().set_sink_position(sink, seq)

    feed = FencedFeed([row(1), row(2)])
    mine = Lease("sink:otel", "host-a", 2, NOW + timedelta(seconds=30))
    with exporter(rx.endpoint) as ex:
        assert export_changes(feed, "otel", ex.send, batch_size=1, lease=mine).exported == 2
        feed.add(row(3))
        stale = Lease("sink:otel", "host-a", 1, NOW)
        with pytest.raises(LeaseLost):  # a holder that lost the lease never moves the position
            export_changes(feed, "otel", ex.send, batch_size=1, lease=stale)
    assert feed.sink_position("otel") == 2


#: An export in a process of its own, over a feed of 100 entries whose position is a file
#: (written atomically, as a store commits): argv is the endpoint and the position file.
EXPORT_PROCESS = """
import json, os, sys, threading
from pathlib import Path
from logd.config.settings import OtlpExportConfig
from logd.delivery.sinks.otlp import OtlpSink
from logd.store.interface import Row

endpoint, state = sys.argv[1], Path(sys.argv[2])

def row(n):
    return Row(f"fleet:n{n}", "fleet", "fleetit", f"n{n}", "2026-02-28T10:20:30+00:00",
               "failure", f"order {n} failed", None, None, None, {"id": n}, None)

class FileFeed:
    def changes_after(self, seq, *, limit):
        return [(i, row(i)) for i in range(seq + 1, min(100, seq + limit) + 1)]
    def sink_position(self, sink):
        return json.loads(state.read_text())[sink] if state.exists() else 0
    def set_sink_position(self, sink, seq, *, lease=None):
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({sink: seq}))
        os.replace(tmp, state)

feed = FileFeed()
config = {"kind": "otlp", "name": "otel", "endpoint": endpoint, "batch_size": 10}
sink = OtlpSink(OtlpExportConfig.model_validate(config), feed)
stop = threading.Event()
sink.run(stop, wait=lambda seconds: feed.sink_position("otel") == 100 and stop.set())
"""


def test_kill_9_mid_export_and_a_restart_lose_nothing(tmp_path: Path, rx: OtlpReceiver) -> None:
    script, state = tmp_path / "export.py", tmp_path / "position.json"
    script.write_text(EXPORT_PROCESS)
    command = [sys.executable, str(script), rx.endpoint, str(state)]
    first = subprocess.Popen(command)

    def kill_at_the_third_batch(got: Received) -> None:
        if len(rx.received) == 3:  # sent, and killed before the collector's answer
            os.kill(first.pid, signal.SIGKILL)

    rx.on_request = kill_at_the_third_batch
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert orjson.loads(state.read_bytes()) == {"otel": 20}  # two batches answered, moved
    rx.on_request = None
    second = subprocess.run(command, timeout=60)
    assert second.returncode == 0
    ids = [attributes(rec)["logd.native_id"] for _, rec in rx.records()]
    assert sorted(set(ids)) == sorted(f"n{i}" for i in range(1, 101))  # every entry, once or more
    assert sorted({i for i in ids if ids.count(i) > 1}) == sorted(f"n{i}" for i in range(21, 31))
    assert orjson.loads(state.read_bytes()) == {"otel": 100}


class Leases:
    """`Store.claim_lease` in memory, on a clock the test moves; the feed checks the fence."""

    def __init__(self) -> None:
        self.now = NOW
        self.held: dict[str, Lease] = {}
        self.token = 0

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        current = self.held.get(name)
        if current is not None and current.holder != holder and current.expires_at > self.now:
            return None
        if current is None or current.holder != holder:
            self.token += 1
        lease = Lease(name, holder, self.token, self.now + timedelta(seconds=ttl))
        self.held[name] = lease
        return lease


class LeasedFeed(MemoryFeed):
    def __init__(self, rows: Sequence[Row], leases: Leases) -> None:
        super().__init__(rows)
        self.leases = leases

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        if lease is None or self.leases.held[lease.name].token != lease.token:
            raise LeaseLost(f"{lease.name if lease else sink}: passed to another holder")
        super().set_sink_position(sink, seq)


def test_daemons_sharing_a_store_export_once_and_take_over_a_lapsed_lease(
    rx: OtlpReceiver,
) -> None:
    leases = Leases()
    feed = LeasedFeed([row(i) for i in range(6)], leases)
    cfg = config(rx.endpoint, batch_size=2)
    a = OtlpSink(cfg, feed, leases=leases, holder="host-a", lease_ttl=60)
    b = OtlpSink(cfg, feed, leases=leases, holder="host-b", lease_ttl=60)
    try:
        assert a.export_due().exported == 6
        standby = b.export_due()
        assert standby.standby and standby.batches == 0  # host-a holds the sink
        # host-a dies; once its lease lapses, host-b goes on from the position.
        feed.add(row(6))
        leases.now += timedelta(seconds=61)
        assert b.export_due().exported == 1
        assert a.export_due().standby  # back, it stands by
        # A takeover in the middle of host-b's batch: its move is refused, the new holder
        # sends that batch again (at least once), and nothing is lost.
        feed.add(row(7))

        def take_over(got: Received) -> None:
            leases.now += timedelta(seconds=61)
            assert leases.claim_lease("sink:otel", "host-a", 60) is not None

        rx.on_request = take_over
        fenced = b.export_due()
        rx.on_request = None
        assert fenced.exported == 0 and feed.sink_position("otel") == 7
        assert a.export_due().exported == 1
    finally:
        a.close()
        b.close()
    ids = [attributes(rec)["logd.native_id"] for _, rec in rx.records()]
    assert sorted(set(ids)) == sorted(f"n{i}" for i in range(8))
    assert [i for i in set(ids) if ids.count(i) > 1] == ["n7"]


def test_a_later_change_of_an_entry_is_exported_again(rx: OtlpReceiver) -> None:
    feed = MemoryFeed([row(1, status="pending")])
    with exporter(rx.endpoint) as ex:
        export_changes(feed, "otel", ex.send, batch_size=10)
        feed.add(row(1, status="failure"))
        done = export_changes(feed, "otel", ex.send, batch_size=10)
    assert done.exported == 1
    statuses = [attributes(rec)["logd.status"] for _, rec in rx.records()]
    assert statuses == ["pending", "failure"]


def test_a_round_that_must_wait_keeps_its_position_and_stops(rx: OtlpReceiver) -> None:
    rx.respond_with(200, 503)
    feed = MemoryFeed([row(i) for i in range(6)])
    with exporter(rx.endpoint) as ex:
        done = export_changes(feed, "otel", ex.send, batch_size=2)
    assert (done.batches, done.exported, feed.sink_position("otel")) == (2, 2, 2)
    assert done.halted is not None and done.halted.outcome == "retry"


# -- configuration --------------------------------------------------------------------------


def test_logs_url_appends_v1_logs_to_the_base_url() -> None:
    assert logs_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/logs"
    assert logs_url("https://otel.example/") == "https://otel.example/v1/logs"
    assert logs_url("https://gw.example/otlp/") == "https://gw.example/otlp/v1/logs"


def write(tmp_path: Path, exports: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(exports)
    path.chmod(0o600)
    return path


def test_an_export_table_loads_with_defaults_and_secret_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTLP_KEY", API_KEY)
    path = write(
        tmp_path,
        '[[exports]]\nkind = "otlp"\nname = "otel"\nendpoint = "http://127.0.0.1:4318"\n'
        'headers = { "api-key" = { env = "OTLP_KEY" } }\n',
    )
    (export,) = load_settings(path).exports
    assert (export.format, export.compression, export.batch_size, export.timeout) == (
        "protobuf",
        "none",
        512,
        10.0,
    )
    assert export.headers["api-key"].get_secret_value() == API_KEY
    assert API_KEY not in repr(export)
    shown = CliRunner().invoke(cli, ["check-config", "-c", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "  export otel: otlp (protobuf) to http://127.0.0.1:4318\n" in shown.output


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('endpoint = "http://otel.example:4318"', "exports[0].endpoint: http:// is only allowed"),
        ('endpoint = "http://127.0.0.1:4318/v1/logs"', "leave out /v1/logs"),
        ('endpoint = "https://otel.example/?key=abc"', "must not have a query string"),
        ('endpoint = "https://otel.example"\nformat = "xml"', "exports[0].format"),
        ('endpoint = "https://otel.example"\ncompress = "gzip"', "exports[0].compress: unknown"),
        (
            'endpoint = "https://otel.example"\nheaders = { "Content-Type" = "text/plain" }',
            "exports[0].headers: 'Content-Type' is set by logd; it cannot be replaced",
        ),
    ],
)
def test_export_problems_name_their_key(tmp_path: Path, table: str, expected: str) -> None:
    path = write(tmp_path, f'[[exports]]\nkind = "otlp"\nname = "otel"\n{table}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert expected in str(info.value)


def test_an_export_problem_is_reported_beside_a_problem_elsewhere(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'log_level = "loud"\n[[exports]]\nkind = "otlp"\nname = "otel"\n'
        'endpoint = "http://otel.example:4318"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "log_level" in str(info.value) and "exports[0].endpoint: http://" in str(info.value)


def test_two_exports_cannot_share_a_name(tmp_path: Path) -> None:
    one = '[[exports]]\nkind = "otlp"\nname = "otel"\nendpoint = "http://127.0.0.1:4318"\n'
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, one + one))
    assert "exports[1].name: 'otel' is already used by exports[0]" in str(info.value)


def test_exports_test_sends_one_record_and_shows_the_answer(
    tmp_path: Path, rx: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTLP_KEY", API_KEY)
    path = write(
        tmp_path,
        f'[[exports]]\nkind = "otlp"\nname = "otel"\nendpoint = "{rx.endpoint}"\n'
        'headers = { "api-key" = { env = "OTLP_KEY" } }\n',
    )
    ok = CliRunner().invoke(cli, ["exports", "test", "otel", "-c", str(path)])
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"otel: delivered to {rx.endpoint} (protobuf), HTTP 200\n"
    ((resource, record),) = rx.records()
    assert resource["logd.source"] == "logd-test" and record.severity_text == "ERROR"
    assert rx.received[0].headers["api-key"] == API_KEY
    rx.respond_with(Answer(401, error_message=f"key {API_KEY} is not known"))
    refused = CliRunner().invoke(cli, ["exports", "test", "otel", "-c", str(path)])
    assert refused.exit_code == 1
    assert "otel: not delivered: HTTP 401: key *** is not known; check the export's headers" in (
        refused.output
    )
    assert API_KEY not in refused.output
    unknown = CliRunner().invoke(cli, ["exports", "test", "loki", "-c", str(path)])
    assert unknown.exit_code == 2
    assert "no export named 'loki' in the config; configured: otel" in unknown.output


def test_a_literal_key_in_a_readable_file_is_warned_about(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[exports]]\nkind = "otlp"\nname = "otel"\nendpoint = "http://127.0.0.1:4318"\n'
        f'headers = {{ "Authorization" = "Bearer {API_KEY}", "X-Team" = "ops" }}\n',
    )
    path.chmod(0o644)
    (warning,) = load_settings(path).warnings
    assert "(exports[0].headers.Authorization)" in warning and API_KEY not in warning
