"""One API record → one `Entry`, as `[sources.records]` and `[[sources.status]]` describe.

Status rules run in order and the first that holds decides (no rule: success). Comparisons
follow JSON: `<`, `<=`, `>`, `>=` compare two numbers (a numeric string counts as its number)
or two strings, and a rule whose operands cannot be compared does not hold; `empty` is a
missing value, null, "", [] or {}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from jmespath.exceptions import JMESPathError

from logd.plugin.entries import Entry, Status, parse_timestamp

from .options import FieldOptions, RecordsOptions, StatusRule, TimestampOptions, compiled, zone


class MappingError(ValueError):
    """A record that cannot become an entry; the message names the field and why."""


def search(path: str, document: Any) -> Any:
    """`path` applied to `document`; a function given the wrong types is a `MappingError`."""
    try:
        return compiled(path).search(document)
    except JMESPathError as exc:
        raise MappingError(f"`{path}`: {exc}") from None


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _ordered(left: Any, right: Any) -> tuple[Any, Any] | None:
    """Two comparable operands (both numbers, or both strings), else None."""
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a, b
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    return None


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


def holds(rule: StatusRule, record: Any) -> bool:
    """True when `rule` holds for `record`."""
    value = search(rule.path, record)
    op = rule.op
    if op == "empty":
        return _is_empty(value)
    if op == "not empty":
        return not _is_empty(value)
    if op == "==":
        return _equal(value, rule.value)
    if op == "!=":
        return not _equal(value, rule.value)
    if op == "in":
        return any(_equal(value, item) for item in rule.value)
    pair = _ordered(value, rule.value)
    if pair is None:
        return False
    left, right = pair
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def status_of(rules: Sequence[StatusRule], record: Any) -> Status:
    """The status of the first rule that holds, else success."""
    for rule in rules:
        if holds(rule, record):
            return Status(rule.status)
    return Status.SUCCESS


def _text(value: Any) -> str | None:
    """A stored text field: strings as they are, other scalars as JSON, nothing as None."""
    if _is_empty(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def field_text(spec: FieldOptions | None, record: Any, status: Status) -> str | None:
    """One text field: `path`, then `on_failure` for a failure, then `default`."""
    if spec is None:
        return None
    if spec.only_on_failure and status is not Status.FAILURE:
        return None
    value = _text(search(spec.path, record))
    if value is None and spec.on_failure and status is Status.FAILURE:
        value = _text(search(spec.on_failure, record))
    return value if value is not None else spec.default


def parse_time(value: Any, spec: TimestampOptions, tz: tzinfo) -> datetime:
    """A record's time as an aware datetime, in the configured format; `ValueError` if not."""
    fmt = spec.format
    if fmt in ("epoch_s", "epoch_ms"):
        number = _number(value)
        if number is None:
            raise ValueError(f"{value!r} is not a number of {fmt.removeprefix('epoch_')}")
        return datetime.fromtimestamp(number / 1000 if fmt == "epoch_ms" else number, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    if fmt == "iso8601":
        return parse_timestamp(value, default_tz=tz)
    parsed = datetime.strptime(value, fmt)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


class RecordMapper:
    """Maps records as one source describes them; built once per poll."""

    def __init__(self, records: RecordsOptions, rules: Sequence[StatusRule]) -> None:
        self.spec = records
        self.rules = list(rules)
        self.tz = zone(records.timestamp.timezone)

    def records(self, body: Any) -> list[Any]:
        """The list of records in an answer; `MappingError` when it is not a list."""
        found = search(self.spec.path, body)
        if found is None:
            return []
        if not isinstance(found, list):
            raise MappingError(f"`{self.spec.path}` is a {type(found).__name__}, not a list")
        return found

    def native_id(self, record: Any) -> Any:
        """The record's id as the description reads it (for a quarantined record's key)."""
        return search(self.spec.id.path, record)

    def entry(self, record: Any, seen_at: datetime) -> Entry:
        """One entry; `MappingError` naming the field when the record lacks what is required."""
        native_id = search(self.spec.id.path, record)
        if _is_empty(native_id) or isinstance(native_id, dict | list | bool):
            raise MappingError(f"no usable id at `{self.spec.id.path}`: {native_id!r}")
        ts = self.spec.timestamp
        raw_time = search(ts.path, record)
        observed = False
        if _is_empty(raw_time):
            if ts.missing != "observed":
                raise MappingError(f"no timestamp at `{ts.path}`")
            timestamp, observed = seen_at, True
        else:
            try:
                timestamp = parse_time(raw_time, ts, self.tz)
            except (ValueError, OverflowError, OSError) as exc:
                raise MappingError(f"unreadable timestamp at `{ts.path}`: {exc}") from None
        status = status_of(self.rules, record)
        return Entry(
            native_id=_text(native_id) or "",
            timestamp=timestamp,
            timestamp_observed=observed,
            status=status,
            message=field_text(self.spec.message, record, status) or "",
            error=field_text(self.spec.error, record, status),
            entity_type=field_text(self.spec.entity_type, record, status),
            entity_id=field_text(self.spec.entity_id, record, status),
            raw=record,
        )
