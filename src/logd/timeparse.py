"""Durations (`30s`, `5m`, `1h`, `7d`), points in time (`2h` ago, ISO dates), and time zones.

The rule for times every command shows or reads: UTC, unless the command is given `--local`
(then the zone of the machine, `TZ`). Tables name the zone in their headers (`time (UTC)`), a
date or time typed without a zone (`--since 2026-11-30`) is read in the same zone the tables
show, and `stats --by day|hour` groups by days and hours of that zone, so a count in one
command matches the count in another. Stored timestamps are always UTC.
"""

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


def parse_time(value: str, *, now: datetime | None = None, local: bool = False) -> datetime:
    """A point in time (aware, UTC): relative (`15m`, `2h`, `7d` ago), `now`, or ISO 8601.

    A date or time without a zone is read in UTC, or in local time when `local` (the zone the
    tables show, see the module docstring); `Z` or an offset is taken as written.
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
    if parsed.tzinfo is None:  # astimezone() reads a naive time as local, DST included
        parsed = parsed.astimezone() if local else parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def in_zone(when: datetime | str, *, local: bool = False) -> datetime:
    """`when` (aware, or a stored ISO timestamp) in UTC, or in local time when `local`."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    return when.astimezone(None if local else UTC)


def zone_name(*, local: bool = False) -> str:
    """The zone's name for headers: `UTC`, or the local abbreviation (`JST`, `CET`) now."""
    if not local:
        return "UTC"
    return datetime.now().astimezone().tzname() or "local"


def show_time(when: datetime | str, *, local: bool = False, seconds: bool = True) -> str:
    """`2026-11-30 10:00:00` in the zone (the zone itself goes in the header)."""
    return in_zone(when, local=local).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def short_time(when: datetime | str | None, *, local: bool = False) -> str | None:
    """The time of day for today (in the zone), else the date and the minute; None stays None."""
    if not when:
        return None
    shown = in_zone(when, local=local)
    today = in_zone(datetime.now(UTC), local=local).date()
    return shown.strftime("%H:%M:%S" if shown.date() == today else "%Y-%m-%d %H:%M")
