"""The normalized log entry every provider produces, and the batch it travels in."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

JSON = dict[str, Any]


class Status(StrEnum):
    """Outcome of one logged call, as the store and the webhooks understand it."""

    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"


@dataclass(slots=True)
class Entry:
    """One native log record, normalized.

    `raw` is the whole record exactly as the vendor sent it; `details` holds anything fetched
    alongside it (a downloaded log file, say). Both are JSON-serializable. `timestamp` must be
    timezone-aware; the store keeps it as UTC ISO 8601.
    """

    native_id: str
    timestamp: datetime
    status: Status
    message: str = ""
    error: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    raw: Any = None
    details: Any = None
    #: True when the vendor gives no time and `timestamp` is when logd first saw the record:
    #: the store then keeps the first sighting's time on every later fetch.
    timestamp_observed: bool = False
    # Filled in by the engine from the source the entry came from.
    source: str = ""
    provider: str = ""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError(f"entry {self.native_id!r}: timestamp must be timezone-aware")
        # Exact-type checks first: every fetched record passes here, and Status(Status.X)
        # goes through the enum machinery for nothing.
        if type(self.native_id) is not str:
            self.native_id = str(self.native_id)
        if type(self.status) is not Status:
            self.status = Status(self.status)

    @property
    def id(self) -> str:
        """The store-wide id, `"{source}:{native_id}"`."""
        return f"{self.source}:{self.native_id}"

    @property
    def utc_timestamp(self) -> str:
        """The timestamp as UTC ISO 8601 with microseconds, the stored form."""
        return self.timestamp.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class Batch:
    """Entries to store together with the cursor that is valid once they are stored.

    The engine commits `entries` and `cursor` in one transaction, so a provider may yield a
    batch with no entries just to move its cursor (a page of known records, an empty window).
    `pages` and `requests` count what this batch cost, for `logd status`.
    """

    entries: Sequence[Entry]
    cursor: Mapping[str, Any] | None = None
    pages: int = 1
    requests: int = 0
    #: Records this poll will list in all, when the API says (a `count`/`total` field):
    #: `logd sync` then draws a progress bar instead of a spinner.
    total: int | None = None
    # Free-form notes that reach the poll log (e.g. a download that will be retried).
    warnings: list[str] = field(default_factory=list)
    #: Whether the vendor says its listing goes on after this page (a `next` link, a pointer
    #: other than the last); None when the provider does not say. Empty pages that keep
    #: saying so stop the poll (logd.paging).
    more: bool | None = None


def parse_timestamp(value: str | int | float, *, default_tz: Any = UTC) -> datetime:
    """Parse an ISO 8601 string or epoch seconds into an aware datetime (naive means `default_tz`).

    Accepts a trailing `Z`, a space instead of `T`, and fractional seconds of any length.
    """
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed


def searchable_text(value: Any, *, known: Iterable[str | None] = ()) -> str:
    """Flatten the scalar values of a JSON document into one line of words for the FTS index.

    Only what is worth searching goes in. Keys are left out: every record has an `error` key,
    so indexing keys would make a search for "error" match everything. Timestamps are left
    out (`--since`/`--until` search by time, and their digits would fill the index), and so
    is a value seen before in the document or given in `known` (the entry's message and
    error, which the index holds in columns of their own).
    """
    # An insertion-ordered dict is the set of words: the first sighting keeps its place.
    words: dict[str, None] = dict.fromkeys(k for k in known if k)
    given = len(words)
    _collect(value, words)
    return " ".join(list(words)[given:]) if given else " ".join(words)


def _is_timestamp(text: str) -> bool:
    # "2024-05-01", "2024-05-01T10:00:00.123+02:00", "2024-05-01 10:00": cheap checks only.
    return 10 <= len(text) <= 35 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


def _collect(value: Any, words: dict[str, None]) -> None:
    # Exact-type dispatch first, and a dict's scalars handled in its own loop: this runs for
    # every value of every record a backfill stores (4.1 µs a FleetIT record before, 2.7 now).
    kind = type(value)
    if kind is dict:
        for item in value.values():
            kind = type(item)
            if kind is str:
                # _is_timestamp, inlined: this runs for every string of every record.
                if item and not (
                    10 <= len(item) <= 35
                    and item[4] == "-"
                    and item[7] == "-"
                    and item[:4].isdigit()
                ):
                    words[item] = None
            elif kind is int:
                words[str(item)] = None
            elif item is not None and kind is not bool:
                _collect(item, words)
    elif kind is list:
        for item in value:
            _collect(item, words)
    elif kind is str:
        if value and not _is_timestamp(value):
            words[value] = None
    elif value is None or kind is bool:
        return
    elif isinstance(value, str):
        if value and not _is_timestamp(value):
            words[value] = None
    elif isinstance(value, int | float):
        words[str(value)] = None
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, words)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, words)
    else:
        text = json.dumps(value, default=str)
        if not _is_timestamp(text):
            words[text] = None
