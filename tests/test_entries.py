"""The entry model is the contract's boundary: whatever a provider maps is checked there."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from logd import (
    Entry,
    Invalid,
    InvalidEntry,
    ProtocolError,
    SourceError,
    Status,
    cap_watermark,
    map_record,
    map_records,
    native_id_of,
    parse_timestamp,
)
from logd.plugin.entries import EARLIEST, LATEST, WATERMARK_TOLERANCE
from logd.store.sqlite.search import time_key

WHEN = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
INT64 = 2**63 - 1


def entry(**fields: Any) -> Entry:
    return Entry(**{"native_id": "1", "timestamp": WHEN, "status": Status.SUCCESS, **fields})


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"timestamp": None}, "timestamp must be a datetime, not null"),
        ({"timestamp": [1]}, "not a list"),
        ({"timestamp": 1e20}, "not a number"),
        ({"timestamp": "2026-05-01"}, "not the text"),
        ({"timestamp": datetime(2026, 5, 1)}, "no time zone"),
        ({"timestamp": datetime(2262, 4, 12, tzinfo=UTC)}, "outside the accepted range"),
        ({"timestamp": datetime(1677, 9, 20, tzinfo=UTC)}, "outside the accepted range"),
        ({"timestamp": datetime(9999, 12, 31, tzinfo=UTC)}, "outside the accepted range"),
        ({"native_id": None}, "native id must be a non-empty string or an integer, not null"),
        ({"native_id": True}, "not a boolean"),
        ({"native_id": 1.5}, "not a number"),
        ({"native_id": [1]}, "not a list"),
        ({"native_id": {"a": 1}}, "not an object"),
        ({"native_id": ""}, "not an empty string"),
        ({"native_id": "   "}, "not an empty string"),
        ({"status": "ok"}, "status 'ok' is not one of success, failure, pending, invalid"),
        ({"status": None}, "status None is not one of"),
        ({"message": None}, "message must be text, not null"),
        ({"message": 3}, "message must be text"),
        ({"error": ["x"]}, "error must be text, not a list"),
        ({"entity_type": 1}, "entity_type must be text"),
        ({"entity_id": {"id": 1}}, "entity_id must be text, not an object"),
        ({"timestamp_observed": None}, "timestamp_observed must be true or false"),
    ],
)
def test_a_wrong_value_in_any_field_is_an_invalid_entry_naming_it(
    fields: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidEntry) as caught:
        entry(**fields)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)  # what providers already catch


def test_the_accepted_range_fits_the_store_key_with_room_to_spare() -> None:
    # time_key is microseconds since 1970 times 1000 in int64: 1677-09-21 to 2262-04-11.
    assert -INT64 < time_key(EARLIEST - timedelta(days=365)) < time_key(EARLIEST)
    assert time_key(LATEST + timedelta(days=365)) < INT64
    entry(timestamp=EARLIEST)
    entry(timestamp=LATEST - timedelta(microseconds=1))
    with pytest.raises(InvalidEntry):
        entry(timestamp=LATEST)


def test_good_values_are_normalized_not_refused() -> None:
    made = entry(
        native_id=42,
        status="failure",
        timestamp=datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
        message=Status.PENDING,  # a str subclass becomes a plain str
    )
    assert (made.native_id, made.status, type(made.message)) == ("42", Status.FAILURE, str)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0000-00-00 00:00:00", "'0000-00-00 00:00:00' is not an ISO 8601 date-time"),
        ("", "is not an ISO 8601 date-time"),
        ("yesterday", "is not an ISO 8601 date-time"),
        (True, "not a boolean"),
        (False, "not a boolean"),
        (None, "not null"),
        ([1], "not a list"),
        ({"t": 1}, "not an object"),
        (math.nan, "nan is not a number of seconds"),
        (math.inf, "inf is not a number of seconds"),
        (-math.inf, "is not a number of seconds"),
        (1e20, "epoch timestamp 1e+20 is outside the accepted range"),
        (-(2**70), "outside the accepted range"),
        (253402300800, "outside the accepted range"),  # 10000-01-01
        ("2262-04-12T00:00:00Z", "outside the accepted range 1900-01-01 to 2199-12-31"),
        ("1677-09-21 00:00:00", "outside the accepted range"),
        ("0001-01-01T00:00:00+00:00", "outside the accepted range"),
    ],
)
def test_parse_timestamp_refuses_with_a_message_saying_what_was_wrong(
    value: Any, words: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_timestamp(value)
    assert words in str(caught.value)


def test_parse_timestamp_reads_what_it_did_before() -> None:
    assert parse_timestamp("2026-05-01T10:00:00Z") == WHEN
    assert parse_timestamp("2026-05-01 12:00:00+02:00") == WHEN
    assert parse_timestamp("2026-05-01T10:00:00.123456789Z") == WHEN.replace(microsecond=123456)
    assert parse_timestamp(WHEN.timestamp()) == WHEN
    assert parse_timestamp(int(WHEN.timestamp())) == WHEN
    assert parse_timestamp(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_timestamp(-1.5) == datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC)
    berlin = timezone(timedelta(hours=2))
    assert parse_timestamp("2026-05-01 12:00", default_tz=berlin) == WHEN


def to_entry(record: dict[str, Any]) -> Entry:
    return Entry(
        native_id=record["id"], timestamp=parse_timestamp(record["t"]), status=Status.SUCCESS
    )


def test_map_records_quarantines_what_it_cannot_map_and_keeps_the_rest() -> None:
    records: list[Any] = [
        {"id": 1, "t": "2026-05-01T10:00:00Z"},
        {"id": 2, "t": "0000-00-00 00:00:00"},
        {"id": None, "t": "2026-05-01T10:00:00Z"},
        {"id": 3},
        [1, 2],
        "text",
        None,
        {"id": 4, "t": "2026-05-01T10:00:01Z"},
    ]

    entries, invalid = map_records(records, to_entry)

    assert [e.native_id for e in entries] == ["1", "4"]
    assert [i.raw for i in invalid] == records[1:7]
    assert [i.native_id for i in invalid] == ["2", None, "3", None, None, None]
    assert "0000-00-00 00:00:00" in invalid[0].reason
    assert "native id must be a non-empty string or an integer, not null" in invalid[1].reason
    assert invalid[2].reason == "KeyError: 't'"  # a mapper tripping: the type says what


def test_a_protocol_error_is_a_bad_record_but_other_source_errors_stop_the_poll() -> None:
    def refuse(record: Any) -> Entry:
        raise ProtocolError("no id")

    def logged_out(record: Any) -> Entry:
        raise SourceError("session expired")

    assert map_records([{"id": "a"}], refuse)[1] == [Invalid({"id": "a"}, "no id", "a")]
    with pytest.raises(SourceError, match="session expired"):
        map_records([{"id": "a"}], logged_out)
    assert isinstance(map_record({"x": 1}, refuse), Invalid)


def test_a_quarantined_record_is_an_invalid_entry_keyed_by_its_id_or_its_hash() -> None:
    with_id = Invalid({"id": 7, "t": None}, "bad\ntime", "7").to_entry(WHEN)
    assert (with_id.native_id, with_id.status, with_id.timestamp) == ("7", Status.INVALID, WHEN)
    assert with_id.timestamp_observed
    assert (with_id.message, with_id.error) == ("unreadable record: bad time", "bad time")

    # No usable id: a stable hash of the JSON, so a re-fetch is the same row and two
    # different bad records are two rows.
    one = Invalid({"id": None, "a": 1}, "x").to_entry(WHEN)
    again = Invalid({"a": 1, "id": None}, "x").to_entry(WHEN + timedelta(hours=1))
    other = Invalid({"id": None, "a": 2}, "x").to_entry(WHEN)
    assert one.native_id == again.native_id != other.native_id
    assert one.native_id.startswith("invalid-")


@pytest.mark.parametrize("value", [None, True, 1.0, [1], {"a": 1}, "", " "])
def test_native_id_of_refuses_what_str_would_turn_into_a_shared_id(value: Any) -> None:
    with pytest.raises(InvalidEntry, match=r"^record id must be"):
        native_id_of(value, "record id")
    assert native_id_of(12) == "12" and native_id_of("a-1") == "a-1"


def test_a_watermark_never_runs_more_than_the_tolerance_ahead_of_our_clock() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus3 = timezone(timedelta(hours=3))
    # Behind or a little ahead of our clock (within tolerance): kept as it is.
    for value in (now - timedelta(days=3), now + WATERMARK_TOLERANCE):
        assert cap_watermark(value, now) == value
    # Days ahead: our clock plus the tolerance, in the vendor's own offset.
    capped = cap_watermark((now + timedelta(days=3)).astimezone(plus3), now)
    assert capped == now + WATERMARK_TOLERANCE and capped.utcoffset() == timedelta(hours=3)
    assert cap_watermark(now + timedelta(hours=1), now, timedelta(0)) == now


def test_an_entry_holds_only_what_a_provider_maps() -> None:
    # Which source and provider a record came from is the engine's to say, with the batch:
    # a field on Entry would be one a provider must leave alone.
    import dataclasses

    assert {f.name for f in dataclasses.fields(Entry)} == {
        "native_id", "timestamp", "status", "message", "error", "entity_type", "entity_id",
        "raw", "details", "timestamp_observed",
    }  # fmt: skip
