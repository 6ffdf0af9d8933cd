"""Durations (`30s`, `5m`, `1h`, `7d`) and points in time (`2h` ago, ISO dates) from users."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from an int/float or a string like `"90"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h or 1d, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"expected a duration such as 30s, 5m, 1h or 1d, got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest exact form: 3600 → `1h`, 90 → `90s`."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """A point in time: relative (`15m`, `2h`, `7d` ago), `now`, or an ISO date or date-time.

    A date or time without a zone is taken in local time, as a person typing it means it.
    """
    now = now or datetime.now(UTC)
    text = value.strip()
    if text == "now":
        return now
    if _DURATION.match(text) and not text.isdigit():
        return now - timedelta(seconds=parse_duration(text))
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: use 15m, 2h, 7d, 2024-05-01 or 2024-05-01T10:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive = local time
    return parsed.astimezone(UTC)
