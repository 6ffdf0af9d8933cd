"""How an entry becomes a stored row: its JSON, its hashes and its searchable text.

None of this needs the database, so a poll prepares each batch while fetching the next page
(prefetch.py) and the store's transaction does only SQL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson

from logd.plugin.entries import Entry
from logd.store.sqlite.search import EPOCH, MICROSECOND, SLOTS
from logd.store.text import searchable_text


@dataclass(slots=True)
class Prepared:
    """An entry serialized for the store."""

    timestamp: str  # UTC ISO 8601, the stored form
    key: int  # time_key(timestamp): where the entry's primary key starts looking
    raw: str | None
    details: str | None
    details_hash: str | None
    hash: str  # of everything but `details`: an unchanged re-fetch writes nothing
    text: str  # the flattened values of raw and details, for the FTS index
    provider: str  # of the source the entry came from (hashed: a moved source rewrites)

    def __len__(self) -> int:
        """Characters of serialized text held: what the prepared entry costs in memory."""
        return len(self.raw or "") + len(self.details or "") + len(self.text)

    def columns(self, entry: Entry) -> list[Any]:
        """The entry's stored columns from `provider` to `timestamp_observed` (INSERT_ENTRY)."""
        return [
            self.provider,
            self.timestamp,
            str(entry.status),
            entry.message,
            entry.error,
            entry.entity_type,
            entry.entity_id,
            self.raw,
            self.details,
            self.text,
            self.hash,
            self.details_hash,
            entry.timestamp_observed,
        ]


def prepare(entry: Entry, provider: str) -> Prepared:
    """Serialize `entry`, polled through `provider`, for the store."""
    # This runs for every record a backfill stores (100k instructions a FleetIT record before
    # it was written out like this): one timezone conversion, one string to hash, no helpers.
    raw_value, details_value = entry.raw, entry.details
    raw = dumps(raw_value)
    details = None if details_value is None else dumps(details_value)
    when = entry.timestamp
    micros = (when - EPOCH) // MICROSECOND
    timestamp = when.astimezone(UTC).isoformat(timespec="microseconds")
    # What tells a changed re-fetch from an unchanged one: these parts, each followed by
    # \x1f, None as \x00 (the bytes digest() would hash, so stored hashes stay valid).
    error, entity_type, entity_id = entry.error, entry.entity_type, entry.entity_id
    hashed = (
        f"{timestamp}\x1f{entry.status!s}\x1f{entry.message}\x1f"
        f"{_NONE if error is None else error}\x1f"
        f"{_NONE if entity_type is None else entity_type}\x1f"
        f"{_NONE if entity_id is None else entity_id}\x1f"
        f"{provider}\x1f{_NONE if raw is None else raw}\x1f"
    )
    known = (entry.message, error)
    return Prepared(
        timestamp,
        micros * SLOTS,  # time_key, inlined
        raw,
        details,
        None if details is None else digest(details),
        hashlib.blake2b(hashed.encode(), digest_size=16).hexdigest(),
        searchable_text(raw_value, known=known)
        if details_value is None
        else searchable_text([raw_value, details_value], known=known),
        provider,
    )


_NONE = "\x00"


def dumps(value: Any) -> str | None:
    """Stable JSON (sorted keys) so that equal records hash equal; None stays NULL."""
    if value is None:
        return None
    # orjson: a backfill serializes every record; the stdlib took ~5 µs a record, orjson ~0.7.
    try:
        return orjson.dumps(value, option=DUMPS, default=str).decode()
    except TypeError:
        # orjson refuses integers past 64 bits (a vendor's long numeric id, say), which JSON
        # allows and the stdlib writes exactly, in the same compact, sorted form.
        return json.dumps(
            _str_keys(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )


def _str_keys(value: Any) -> Any:
    """`value` with every mapping key a string, as orjson's OPT_NON_STR_KEYS writes them."""
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_str_keys(v) for v in value]
    return value


DUMPS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def digest(*parts: str | None) -> str:
    """A short hash of `parts`, None distinct from the empty string."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(b"\x00" if part is None else part.encode())
        h.update(b"\x1f")
    return h.hexdigest()
