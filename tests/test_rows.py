"""How entries become rows: the fast paths must give what the plain library calls give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from logd import Entry, Status
from logd.store.sqlite.rows import digest, dumps, prepare
from logd.store.sqlite.search import time_key
from logd.store.text import searchable_text


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
