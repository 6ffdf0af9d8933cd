"""How an entry becomes a stored row: its JSON, its hashes and its searchable text.

None of this needs the database, so a poll prepares each batch while fetching the next page
(prefetch.py) and the store's transaction does only SQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from .entries import Entry, searchable_text
from .search import time_key


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

    def columns(self, entry: Entry) -> list[Any]:
        """The entry's stored columns from `provider` to `details_hash` (see INSERT_ENTRY)."""
        return [
            entry.provider,
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
        ]


def prepare(entry: Entry) -> Prepared:
    """Serialize `entry` (its `source` and `provider` set) for the store."""
    raw = dumps(entry.raw)
    details = dumps(entry.details)
    timestamp = entry.utc_timestamp
    return Prepared(
        timestamp=timestamp,
        key=time_key(entry.timestamp),
        raw=raw,
        details=details,
        details_hash=digest(details) if details is not None else None,
        hash=entry_hash(entry, timestamp, raw),
        text=searchable_text([entry.raw, entry.details], known=(entry.message, entry.error)),
    )


def dumps(value: Any) -> str | None:
    """Stable JSON (sorted keys) so that equal records hash equal; None stays NULL."""
    if value is None:
        return None
    # orjson: a backfill serializes every record; the stdlib took ~5 µs a record, orjson ~0.7.
    return orjson.dumps(value, option=DUMPS, default=str).decode()


DUMPS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def entry_hash(entry: Entry, timestamp: str, raw: str | None) -> str:
    """The hash that tells a changed re-fetch from an unchanged one."""
    return digest(
        timestamp,
        entry.status,
        entry.message,
        entry.error,
        entry.entity_type,
        entry.entity_id,
        entry.provider,
        raw,
    )


def digest(*parts: str | None) -> str:
    """A short hash of `parts`, None distinct from the empty string."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(b"\x00" if part is None else part.encode())
        h.update(b"\x1f")
    return h.hexdigest()
