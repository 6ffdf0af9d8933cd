"""One operation-log CSV row → one logd entry."""

from __future__ import annotations

from datetime import UTC, datetime

from logd import Entry, ProtocolError, Status, parse_timestamp

from .csvparts import TRANSACTION_ID

STATUS_COLUMN = "OperationLogStatus"
HAS_ERRORS_COLUMN = "OperationLogHasErrors"
#: The word stored in `details` of a call the vendor marks `OperationLogHasErrors`, so that
#: `logd query hasErrors` finds completed calls that had (non-blocking) errors.
HAS_ERRORS_FLAG = "hasErrors"
STATUSES = {
    "completed": Status.SUCCESS,
    "failed": Status.FAILURE,
    "processing": Status.PENDING,
}
_TIME_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S.%f")


def known_status(row: dict[str, str]) -> bool:
    """True when the row's `OperationLogStatus` is one the vendor documents."""
    return row.get(STATUS_COLUMN, "").strip().lower() in STATUSES


def flag(value: str | None) -> bool:
    """A CSV boolean (`true`/`false`, any case; `1`/`0`)."""
    return (value or "").strip().lower() in ("true", "1", "yes")


def parse_time(value: str | None) -> datetime | None:
    """A UTC time from the export: ISO 8601 (space or `T`), or `dd.mm.yyyy hh:mm[:ss]`."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def message_of(row: dict[str, str]) -> str:
    """`OperationLogErrorMessages`, else `"{method} {url} -> {HTTP status}"`."""
    errors = row.get("OperationLogErrorMessages", "").strip()
    if errors:
        return " ".join(errors.split())
    method = row.get("OperationLogHttpMethod", "").strip() or "?"
    url = row.get("OperationLogUrl", "").strip() or "?"
    code = row.get("OperationLogHTTPStatusCode", "").strip() or "?"
    return f"{method} {url} -> {code}"


def row_id(row: dict[str, str]) -> str | None:
    """The row's `OperationLogTransactionId`, the native id; None when blank."""
    value = row.get(TRANSACTION_ID)
    return value.strip() or None if isinstance(value, str) else None


def to_entry(row: dict[str, str]) -> Entry:
    """Map one export row (kept whole as `raw`); an unknown status is taken as pending.

    Raises ProtocolError for a row without a transaction id or a readable start/end time
    (`map_record` quarantines it).
    """
    native_id = row_id(row)
    if not native_id:
        raise ProtocolError(f"export row without {TRANSACTION_ID}: {_peek(row)}")
    timestamp = parse_time(row.get("OperationLogStartDateTimeUtc")) or parse_time(
        row.get("OperationLogEndDateTimeUtc")
    )
    if timestamp is None:
        raise ProtocolError(
            f"export row {native_id}: unreadable OperationLogStartDateTimeUtc "
            f"{row.get('OperationLogStartDateTimeUtc')!r}"
        )
    # Unknown values stay pending, so a later re-export that says more updates the entry.
    status = STATUSES.get(row.get(STATUS_COLUMN, "").strip().lower(), Status.PENDING)
    has_errors = flag(row.get(HAS_ERRORS_COLUMN))
    errors = row.get("OperationLogErrorMessages", "").strip()
    error: str | None = errors or None
    if status is Status.FAILURE and error is None:
        error = message_of(row)
    system_name = row.get("OperationLogOperationSystemName", "").strip()
    return Entry(
        native_id=native_id,
        timestamp=timestamp,
        status=status,
        message=message_of(row),
        error=error,
        entity_type="operation" if system_name else None,
        entity_id=system_name or None,
        raw=row,
        details={"has_errors": has_errors, "flags": [HAS_ERRORS_FLAG] if has_errors else []},
    )


def _peek(row: dict[str, str]) -> str:
    return "; ".join(f"{k}={v[:40]}" for k, v in list(row.items())[:4])
