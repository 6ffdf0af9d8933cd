"""How entries become rows: the fast paths must give what the plain library calls give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from logd import Entry, Status
from logd.store.sqlite.rows import digest, dumps, prepare, utc_iso
from logd.store.sqlite.search import EPOCH, MICROSECOND, time_key
from logd.store.text import searchable_text


def test_utc_iso_is_isoformat_with_microseconds() -> None:
    rng = random.Random(7)
    stamps = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # before the epoch
        datetime(2024, 2, 29, 23, 59, 0, tzinfo=timezone(timedelta(hours=-4))),  # day rolls over
        datetime(1, 1, 2, tzinfo=UTC),
    ]
    for _ in range(20_000):
        tz = timezone(timedelta(minutes=rng.randint(-23 * 60, 23 * 60)))
        stamps.append(
            datetime(
                rng.randint(2, 9998), rng.randint(1, 12), rng.randint(1, 28),
                rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                rng.choice([0, rng.randint(0, 999_999)]), tzinfo=tz,
            )
        )  # fmt: skip
    for when in stamps:
        expected = when.astimezone(UTC).isoformat(timespec="microseconds")
        assert utc_iso((when - EPOCH) // MICROSECOND) == expected, when


def test_prepare_hashes_the_documented_parts() -> None:
    # prepare() builds the hash input in one string: it must be the parts, each followed by
    # \x1f, None as \x00, so stores written by earlier versions see unchanged rows as such.
    tz = timezone(timedelta(hours=5, minutes=30))
    entries = [
        Entry("1", datetime(2026, 1, 1, 10, tzinfo=tz), Status.PENDING),
        Entry(
            "2",
            datetime(2026, 1, 1, tzinfo=UTC),
            Status.FAILURE,
            message="",
            error="",
            entity_type="",
            entity_id="",
            raw={"b": [1, "ü"], "a": None},
            details={"file": "x"},
        ),
        Entry("3", datetime(2026, 1, 1, tzinfo=UTC), "success", message="ok", raw=None),
    ]
    for entry in entries:
        prep = prepare(entry, "prov")
        timestamp = entry.utc_timestamp
        raw = dumps(entry.raw)
        parts = [
            timestamp,
            entry.status,
            entry.message,
            entry.error,
            entry.entity_type,
            entry.entity_id,
            "prov",
            raw,
        ]
        assert prep.hash == digest(*parts)
        assert (prep.timestamp, prep.key, prep.raw) == (timestamp, time_key(entry.timestamp), raw)
        details = dumps(entry.details)
        assert (prep.details, prep.details_hash) == (
            details,
            None if details is None else digest(details),
        )
        expected_text = searchable_text(
            [entry.raw, entry.details], known=(entry.message, entry.error)
        )
        assert prep.text == expected_text


def test_a_status_set_as_plain_text_after_construction_is_stored() -> None:
    # Entry converts `status` in __init__ only; a plugin assigning "failure" later must not
    # break the fast paths (the hash and the store's row binding read it as text).
    entry = Entry("1", datetime(2026, 1, 1, tzinfo=UTC), Status.SUCCESS)
    as_enum = prepare(entry, "prov")
    entry.status = "success"  # type: ignore[assignment]
    assert prepare(entry, "prov").hash == as_enum.hash
