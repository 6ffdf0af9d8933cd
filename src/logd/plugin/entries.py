"""The normalized log entry every provider produces, and the batch it travels in."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, TypeVar

from logd.errors import LogdError, ProtocolError

JSON = dict[str, Any]
R = TypeVar("R")

#: The years an entry's time may be in: FIRST_YEAR to END_YEAR - 1 (in the time's own zone).
#: The store's key is microseconds since 1970 times 1000 in a signed 64-bit integer, which
#: holds 1677-09-21 to 2262-04-11 only; a vendor's 0001-01-01 or 9999-12-31 would overflow
#: it and roll back the whole batch. No integration log is from before 1900 or after 2199,
#: and the margin to the key's limits leaves room for the arithmetic done on stored times
#: (lookbacks, overlaps, slot spill-over).
FIRST_YEAR = 1900
END_YEAR = 2200
EARLIEST = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
LATEST = datetime(END_YEAR, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_EPOCH = (EARLIEST - EPOCH).total_seconds()
_LATEST_EPOCH = (LATEST - EPOCH).total_seconds()
#: The longest reason kept with a quarantined record (the raw record itself is kept whole).
REASON_LIMIT = 300


class InvalidEntry(ValueError):
    """An entry field holds a value the store cannot take; the message names the field."""


class Status(StrEnum):
    """Outcome of one logged call, as the store and the webhooks understand it."""

    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"
    #: A record that could not be mapped: quarantined with its raw JSON and the reason.
    INVALID = "invalid"


@dataclass(slots=True)
class Entry:
    """One native log record, normalized.

    `raw` is the whole record exactly as the vendor sent it; `details` holds anything fetched
    alongside it (a downloaded log file, say). Both are JSON-serializable. `timestamp` must be
    timezone-aware; the store keeps it as UTC ISO 8601. Which source and provider it came
    from is not the provider's to say: the engine hands both to the store with the batch.
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

    def __post_init__(self) -> None:
        # Every field a provider maps is checked here, the contract's boundary, so that no
        # vendor value reaches the store unchecked. Text fields must be exactly str: a
        # subclass (an enum member, say) becomes the plain str that is stored and hashed.
        nid = self.native_id
        if type(nid) is not str or not nid or nid[0].isspace():
            self.native_id = _native_id(nid)
        when = self.timestamp
        if not isinstance(when, datetime):
            raise InvalidEntry(f"timestamp must be a datetime, not {_kind(when)}")
        # The year of the time as given, not in UTC: an offset moves the year by less than a
        # day, far from where the store key overflows.
        if when.utcoffset() is None or not FIRST_YEAR <= when.year < END_YEAR:
            _refuse_time(when)
        try:
            self.status = Status(self.status)
        except (ValueError, TypeError):
            raise InvalidEntry(
                f"status {_short(self.status)} is not one of {', '.join(s.value for s in Status)}"
            ) from None
        if type(self.message) is not str:
            self.message = _text("message", self.message)
        for name in ("error", "entity_type", "entity_id"):
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                setattr(self, name, _text(name, value))
        if type(self.timestamp_observed) is not bool:
            raise InvalidEntry(
                f"timestamp_observed must be true or false, not {_kind(self.timestamp_observed)}"
            )

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
    #: Records of this batch that could not be mapped (`map_records`): the engine stores
    #: them quarantined, in the batch's transaction, as entries of status `invalid`.
    invalid: list[Invalid] = field(default_factory=list)


@dataclass(slots=True)
class Invalid:
    """A record that could not be mapped to an entry: kept whole, with the reason.

    `native_id` is the id a good entry of the record would have, when the record has a
    usable one (so that a later good fetch replaces the quarantined row); None otherwise, and
    the store keys the record by a hash of its JSON, so that two different bad records never
    merge and a re-fetch of the same one changes nothing.
    """

    raw: Any
    reason: str
    native_id: str | None = None

    def to_entry(self, seen_at: datetime) -> Entry:
        """The quarantined entry: status `invalid`, the reason as its error, time `seen_at`."""
        reason = _one_line(self.reason)
        return Entry(
            native_id=self.native_id or f"invalid-{_json_hash(self.raw)}",
            timestamp=seen_at,
            timestamp_observed=True,
            status=Status.INVALID,
            message=f"unreadable record: {reason}",
            error=reason,
            raw=self.raw,
        )


#: What a mapper raises for a record it cannot map. A `SourceError` other than a
#: `ProtocolError` (an expired login, a refused download) is about the poll, not the record,
#: and passes through; so does anything a mapper has no business raising.
_RECORD_ERRORS = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError)


def map_records(
    records: Iterable[R],
    to_entry: Callable[[R], Entry],
    *,
    native_id: Callable[[R], Any] | None = None,
) -> tuple[list[Entry], list[Invalid]]:
    """Map each record with `to_entry`; a record it cannot map is quarantined, not fatal.

    Returns the entries and the `Invalid` records (put them in `Batch.invalid`). `native_id`
    gives the id a record's entry would have (default: its `id` field), so a later good fetch
    replaces the quarantined row; it is read only for records that failed. A record fails
    when `to_entry` raises `ProtocolError`, `ValueError` (`InvalidEntry`, `parse_timestamp`),
    `TypeError`, `LookupError`, `AttributeError` or `ArithmeticError`: whatever the vendor
    sent, one record never stops the poll.
    """
    entries: list[Entry] = []
    invalid: list[Invalid] = []
    for record in records:
        try:
            entries.append(to_entry(record))
        except _RECORD_ERRORS as exc:
            invalid.append(_invalid(record, exc, native_id))
        except ProtocolError as exc:
            invalid.append(_invalid(record, exc, native_id))
    return entries, invalid


def map_record(
    record: R, to_entry: Callable[[R], Entry], *, native_id: Callable[[R], Any] | None = None
) -> Entry | Invalid:
    """`map_records` for one record (a streamed CSV row, say): its entry or its `Invalid`."""
    try:
        return to_entry(record)
    except (*_RECORD_ERRORS, ProtocolError) as exc:
        return _invalid(record, exc, native_id)


def _invalid(record: Any, exc: Exception, native_id: Callable[[Any], Any] | None) -> Invalid:
    if isinstance(exc, ValueError | LogdError):
        reason = str(exc) or type(exc).__name__
    else:  # a mapper tripping over an unexpected shape: the type says more than the text
        reason = f"{type(exc).__name__}: {exc}"
    try:
        nid = native_id(record) if native_id is not None else _vendor_id(record)
        usable: str | None = _native_id(nid) if nid is not None else None
    except (*_RECORD_ERRORS, LogdError):
        usable = None
    return Invalid(record, reason[:REASON_LIMIT], usable)


def _vendor_id(record: Any) -> Any:
    return record.get("id") if type(record) is dict else None


def native_id_of(value: Any, what: str = "id") -> str:
    """A vendor id as a native id: a non-empty string, or an integer as text.

    Raises `InvalidEntry` for null, booleans, floats, lists, objects and the empty string:
    `str()` of those would make `"None"`, `"True"` or `"[1]"` ids that merge unrelated records.
    """
    try:
        return _native_id(value)
    except InvalidEntry as exc:
        raise InvalidEntry(str(exc).replace("native id", what, 1)) from None


def _native_id(value: Any) -> str:
    kind = type(value)
    if kind is str:
        if value.strip():
            return str(value)
    elif kind is int:
        return str(value)
    elif isinstance(value, str) and value.strip():
        return str.__str__(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    raise InvalidEntry(f"native id must be a non-empty string or an integer, not {_kind(value)}")


def _refuse_time(when: datetime) -> None:
    """Raise `InvalidEntry` for a time `Entry` cannot take: naive, or outside 1900-2199."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidEntry(
            f"timestamp {when.isoformat()} has no time zone (timezone-aware required)"
        )
    if not FIRST_YEAR <= when.year < END_YEAR:
        raise InvalidEntry(f"timestamp {when.isoformat()} is {_outside}")


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    raise InvalidEntry(f"{name} must be text, not {_kind(value)}")


def _kind(value: Any) -> str:
    """`null`, `true`, `a list ([1, 2])`: how a wrong value reads in a reason."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "a boolean"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else f"the text {_short(value)}"
    names = {dict: "an object", list: "a list", float: "a number", int: "an integer"}
    name = names.get(type(value), type(value).__name__)
    return f"{name} ({_short(value)})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:REASON_LIMIT]


def _json_hash(value: Any) -> str:
    """A stable hash of a JSON value (sorted keys), for records without a usable id."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


_outside = "outside the accepted range 1900-01-01 to 2199-12-31 (UTC)"


def parse_timestamp(value: str | int | float, *, default_tz: tzinfo = UTC) -> datetime:
    """Parse an ISO 8601 string or epoch seconds into an aware datetime (naive means `default_tz`).

    Accepts a trailing `Z`, a space instead of `T`, and fractional seconds of any length.
    Raises ValueError, saying what was wrong, for anything else: other types (null, booleans,
    lists), NaN and infinities, `0000-00-00 00:00:00`, and times outside 1900-2199 (see
    `EARLIEST`), which the store could not key.
    """
    kind = type(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(
                f"timestamp {_short(value)} is not an ISO 8601 date-time ({exc})"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=default_tz)
        if not FIRST_YEAR <= parsed.year < END_YEAR:
            raise ValueError(f"timestamp {_short(value)} is {_outside}")
        return parsed
    if kind is int or kind is float:
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(f"timestamp {value!r} is not a number of seconds")
        if not _EARLIEST_EPOCH <= seconds < _LATEST_EPOCH:
            raise ValueError(f"epoch timestamp {_short(value)} is {_outside}")
        # Exact at any magnitude (fromtimestamp goes through the platform's time_t).
        return EPOCH + timedelta(seconds=seconds)
    raise ValueError(f"timestamp must be text or epoch seconds, not {_kind(value)}")


#: How far past the poll's own `now` a watermark may move (`cap_watermark`): vendor clocks a
#: little ahead are common and harmless; days ahead would hide the records that come next.
WATERMARK_TOLERANCE = timedelta(minutes=5)


def cap_watermark(
    value: datetime, now: datetime, tolerance: timedelta = WATERMARK_TOLERANCE
) -> datetime:
    """`value` (a watermark taken from vendor times) no later than `now` plus `tolerance`.

    A vendor clock days ahead stamps records in the future; a watermark set to such a time
    would make the next polls ask only for what is newer and miss the records that arrive
    meanwhile. The cap keeps `value`'s zone (some vendors' filters take their own offset).
    """
    limit = now + tolerance
    if value <= limit:
        return value
    return limit.astimezone(value.tzinfo) if value.tzinfo is not None else limit
