"""Request budgets: staying under a vendor's rate limit instead of bouncing off it.

A budget belongs to a rate group: by default each source is a group of its own; sources that
share a vendor account name the same `rate_group` and share one budget, across the sources of
one engine (one daemon, one `logd sync`; two daemons on one account each keep their own).

Three things make a request wait before it is sent:

- `max_rate` ("10/s", "600/m", "3600/h"): a token bucket of one token, so the group's
  requests go out evenly spaced, never in a burst: vendors count in fixed windows, and a
  bucket holding a second's worth would let twice the rate through across a window's edge.
  The lowest `max_rate` of a group's sources applies.
- The vendor's own counters, `RateLimit-Remaining`/`RateLimit-Reset` (the IETF draft's names)
  or `X-RateLimit-Remaining`/`X-RateLimit-Reset`: none left pauses the group until the reset;
  few left (a tenth of `*-Limit`, or 10 without one) spreads the rest evenly until the reset.
  A reset above 10^9 is an epoch time (milliseconds above 10^12), else seconds from now.
- A `Retry-After` on a 429 or 503 pauses the whole group: the request that got it waits as its
  retry, every other request of the group waits on the budget.

Waiting goes through the source's interruptible sleep, so shutdown and Ctrl-C end it at once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping

#: Vendor counters at or below this (without a `*-Limit` header) slow the group down.
LOW_REMAINING = 10

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$", re.I)
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


def parse_rate(value: object) -> float:
    """Requests per second from `"10/s"`, `"600/m"`, `"3600/h"`, a number, or `"off"` (inf)."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none"):
        return math.inf  # no budget, even where the provider has a default
    if isinstance(value, bool):
        raise ValueError("expected a rate such as 10/s, 600/m or 3600/h")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        match = _RATE.match(str(value))
        if not match:
            raise ValueError(f"expected a rate such as 10/s, 600/m or 3600/h, got {value!r}")
        rate = float(match.group(1)) / _PER[match.group(2).lower()]
    if not rate > 0:
        raise ValueError("a rate must be above zero")
    return rate


def format_rate(rate: float) -> str:
    """`10.0` → `10/s`, `0.5` → `30/m`: the unit that gives a whole number, if any."""
    if math.isinf(rate):
        return "off"
    for unit, per in (("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        count = rate * per
        if abs(count - round(count)) < 1e-9:
            return f"{round(count)}/{unit}"
    return f"{rate:g}/s"


def reset_seconds(value: str, now: float) -> float | None:
    """Seconds until a `*-Reset` header's moment: a delta, an epoch time or epoch milliseconds."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not 0 <= number < 1e15:  # NaN, negative or endless: not a moment
        return None
    if number > 1e12:
        return max(0.0, number / 1000 - now)
    if number > 1e9:
        return max(0.0, number - now)
    return number


class Budget:
    """One rate group's budget; thread-safe, shared by the sources that name the group."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._rates: dict[str, float] = {}  # source -> its max_rate
        self.rate: float | None = None
        #: The earliest the next request may go under `rate` (monotonic): a bucket of one
        #: token, kept as the moment it is full again.
        self._next_slot = 0.0
        #: No request of the group before this (monotonic): a Retry-After or an empty budget.
        self.paused_until = 0.0
        self._paused_by: object = None  # the client whose 429 paused the group
        #: The vendor's counters ask for spacing: no request before this (monotonic).
        self._paced_until = 0.0
        self._pace = 0.0
        #: Seconds requests of this group spent waiting on the budget, in all.
        self.waited = 0.0

    def set_rate(self, source: str, rate: float | None) -> None:
        """`source`'s `max_rate` (None: none); the group keeps to the lowest."""
        with self._lock:
            if rate is None or math.isinf(rate):
                self._rates.pop(source, None)
            else:
                self._rates[source] = rate
            lowest = min(self._rates.values(), default=None)
            if lowest != self.rate:
                self.rate = lowest
                self._next_slot = 0.0

    def reserve(self, by: object = None, now: float | None = None) -> float:
        """Take one request's place; seconds to wait before sending it (0: send now).

        A pause that `by` caused itself is not waited for again: its retry waits for it.
        """
        now = time.monotonic() if now is None else now
        if self.rate is None and not self._pace and self.paused_until <= now:
            return 0.0  # the usual case: no budget set, no vendor asking to slow down
        with self._lock:
            paused = self.paused_until if by is None or by is not self._paused_by else 0.0
            start = max(now, paused, self._paced_until)
            if self._pace:
                self._paced_until = start + self._pace
            if self.rate is not None:
                # Each caller takes the next slot, so waiters queue in order.
                start = max(start, self._next_slot)
                self._next_slot = start + 1 / self.rate
            return start - now

    def sent(self, now: float | None = None) -> None:
        """A request went out now: the next one keeps its distance from this, not its slot.

        A sleep ends a little late, never early; spacing from the slot alone would let two
        requests come closer than `1/rate`, and a vendor's window see one too many.
        """
        if self.rate is None:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.rate is not None:
                self._next_slot = max(self._next_slot, now + 1 / self.rate)

    def pause(self, seconds: float, by: object = None, now: float | None = None) -> None:
        """No request of the group for `seconds` (a Retry-After `by` a client's request)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now + seconds > self.paused_until:
                self.paused_until, self._paused_by = now + seconds, by

    def observe(self, headers: Mapping[str, str], now: float | None = None) -> None:
        """Read the vendor's remaining/reset counters from a response's headers."""
        remaining = _first_number(
            headers.get("ratelimit-remaining") or headers.get("x-ratelimit-remaining")
        )
        if remaining is None:
            return
        reset = headers.get("ratelimit-reset") or headers.get("x-ratelimit-reset")
        seconds = reset_seconds(reset.split(",")[0], time.time()) if reset else None
        if seconds is None:
            return
        left = int(remaining)
        limit = _first_number(headers.get("ratelimit-limit") or headers.get("x-ratelimit-limit"))
        low = max(1, int(limit) // 10) if limit else LOW_REMAINING
        now = time.monotonic() if now is None else now
        with self._lock:
            if left <= 0:
                if now + seconds > self.paused_until:
                    self.paused_until, self._paused_by = now + seconds, None
                self._pace = 0.0
            elif left <= low:
                # Spread what is left until the reset instead of spending it at once.
                self._pace = seconds / left
                self._paced_until = max(self._paced_until, now + self._pace)
            else:
                self._pace = 0.0


def _first_number(value: str | None) -> float | None:
    """The first of a header's comma-separated numbers, if it is a finite one."""
    if value is None:
        return None
    try:
        number = float(value.split(",")[0].strip())
    except ValueError:
        return None
    return number if abs(number) < 1e15 else None


class Budgets:
    """The rate groups of one engine (one daemon, one sync), made on first use."""

    def __init__(self) -> None:
        self._budgets: dict[str, Budget] = {}
        self._lock = threading.Lock()

    def get(self, group: str, source: str, rate: float | None) -> Budget:
        """The budget of `group`, with `source`'s `max_rate` (None or inf: none) recorded."""
        with self._lock:
            found = self._budgets.get(group)
            if found is None:
                found = self._budgets[group] = Budget(group)
        found.set_rate(source, rate)
        return found
