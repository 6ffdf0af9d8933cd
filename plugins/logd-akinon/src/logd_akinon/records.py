"""Akinon log records → logd entries, and the downloaded log file → JSON details.

Log types: 1 main logs, 2 sub logs, 3 line logs. `created` is epoch milliseconds as a string
for main logs and a datetime string for the others; both are read whatever the type, by their
shape. Main log ids keep the vendor's bare `id` as the native id; sub and line logs live in
their own id sequences (inferred), so their native ids are `sub-{id}` and `line-{id}`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import zipfile
import zlib
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from logd import Entry, ProtocolError, Status, native_id_of, parse_timestamp

MAIN: Final = 1
SUB: Final = 2
LINE: Final = 3
FINISHED = 3  # `state`: 1 start, 2 in progress, 3 finished
FAILED = 3  # `status`: 1 in progress, 2 success, 3 failed, 4 empty
STATUS_NAMES = {1: "In progress", 2: "Success", 3: "Failed", 4: "Empty"}
_PREFIX = {MAIN: "", SUB: "sub-", LINE: "line-"}
_KIND = {MAIN: "", SUB: " (sub log)", LINE: " (line log)"}
# A JSON file larger than this once unzipped is not read (a zip bomb must not exhaust memory).
MAX_UNZIPPED = 64 * 1024 * 1024


class DownloadError(Exception):
    """A downloaded log file that cannot be read (bad base64, bad zip, no JSON inside)."""


def _code(value: Any) -> int | None:
    """A state/status code sent as an int or a numeric string; None when absent or odd."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        return None


def native_id(record: dict[str, Any], log_type: int) -> str:
    """The store id of a record of `log_type`: `id`, `sub-{id}` or `line-{id}`.

    Raises ProtocolError without an `id`, InvalidEntry (a ValueError) for an id that is not
    a non-empty string or an integer.
    """
    if not isinstance(record, dict) or "id" not in record:
        raise ProtocolError(f"Akinon log record (log_type={log_type}) without an `id`")
    return f"{_PREFIX[log_type]}{native_id_of(record['id'])}"


def is_finished(record: dict[str, Any]) -> bool:
    """True when `state` is 3 (finished); anything else is re-checked on later polls."""
    return _code(record.get("state")) == FINISHED


def is_failed(record: dict[str, Any]) -> bool:
    """True when `status` is 3 (failed)."""
    return _code(record.get("status")) == FAILED


def status_of(record: dict[str, Any]) -> Status:
    """`status` 3 → failure; 1, or `state` not 3 → pending; 2 and 4 → success."""
    status = _code(record.get("status"))
    if status == FAILED:
        return Status.FAILURE
    if status == 1 or not is_finished(record):
        return Status.PENDING
    if status in (2, 4):
        return Status.SUCCESS
    # A code the vendor page does not list: keep it visible rather than call it a success.
    return Status.PENDING


def parse_created(value: Any, naive_tz: tzinfo = UTC) -> datetime:
    """`created`/`finished`: epoch milliseconds (string or number) or a datetime string.

    A datetime string without an offset is read in `naive_tz` (UTC unless configured).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"`created` must be epoch milliseconds or a date-time, not {value!r:.60}")
    if isinstance(value, int | float):
        # parse_timestamp checks the range (and NaN): fromtimestamp would overflow instead.
        return parse_timestamp(value / 1000)
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return parse_timestamp(float(text) / 1000)
    return parse_timestamp(text, default_tz=naive_tz)


def to_entry(
    record: dict[str, Any],
    *,
    log_type: int,
    flow_id: str,
    naive_tz: tzinfo = UTC,
    main_log: str | None = None,
) -> Entry:
    """Map one record of `log_type` in flow `flow_id` to an entry.

    Line logs fetched for a failed main log pass `main_log` (its native id): the entry's entity
    is then that main log and `details` names it, so `logd show` leads from one to the other.
    """
    if not isinstance(record, dict):
        raise ProtocolError(f"Akinon log record is not an object: {record!r:.80}")
    nid = native_id(record, log_type)
    try:
        timestamp = parse_created(record.get("created"), naive_tz)
    except ValueError as exc:
        raise ProtocolError(f"unreadable `created`: {exc}") from None
    status = status_of(record)
    code = _code(record.get("status"))
    group = record.get("process_group_name")
    name = group if isinstance(group, str) and group else f"flow {flow_id}"
    word = STATUS_NAMES.get(code or 0, f"status {record.get('status')!r}")
    kind = f" (line log of {main_log})" if main_log else _KIND[log_type]
    entity_type, entity_id = ("main_log", main_log) if main_log else ("flow", flow_id)
    return Entry(
        native_id=nid,
        timestamp=timestamp,
        status=status,
        message=f"{name}{kind}: {word}",
        # Only the record decides this: a re-fetch without the download must not change it.
        error="Failed" if status is Status.FAILURE else None,
        entity_type=entity_type,
        entity_id=entity_id,
        raw=record,
        details={"main_log": main_log, "main_filename_uuid": record.get("original_filename_uuid")}
        if main_log
        else None,
    )


def decode_download(body: str) -> dict[str, Any]:
    """The JSON inside a `/logs/download` answer: base64 → zip → the JSON file it holds.

    Returns `{"file": name, "log": parsed JSON}`; raises `DownloadError` saying what was wrong.
    """
    text = body.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        # Tolerate the base64 arriving as a JSON string rather than bare text.
        with contextlib.suppress(json.JSONDecodeError):
            text = str(json.loads(text))
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DownloadError(f"not base64 ({exc})") from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as exc:
        # Crafted headers raise more than BadZipFile (a negative seek, a short read).
        raise DownloadError(f"not a zip file ({exc})") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        # The vendor promises one .json file; try those first, then anything else.
        names.sort(key=lambda n: not n.lower().endswith(".json"))
        for name in names:
            if archive.getinfo(name).file_size > MAX_UNZIPPED:
                continue
            try:
                content = json.loads(archive.read(name).decode("utf-8-sig"))
            # RuntimeError: an encrypted member; RecursionError: JSON nested too deep.
            except (
                zipfile.BadZipFile,
                zlib.error,
                ValueError,
                NotImplementedError,
                OSError,
                EOFError,
                RuntimeError,
            ):
                continue
            return {"file": name, "log": content}
    raise DownloadError(f"no JSON file in the zip (files: {', '.join(names) or 'none'})")
