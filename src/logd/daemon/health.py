"""Is the daemon's scheduler alive? A heartbeat job proves it; the watchdog pings only then.

The scheduler runs a tiny job every few seconds on an executor of its own (so long polls never
delay it) that calls `Heartbeat.beat()`. A separate thread, outside the scheduler, sends
systemd's `WATCHDOG=1` only while the last beat is recent. If the scheduler's loop dies or
wedges, the beats stop, the pings stop, and systemd restarts the service. The same happens
while a poll is stuck: its provider thread outlived the poll's deadline and cannot be taken back
from inside the process (`Engine.stuck`), so only a restart frees it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from logd.daemon.notify import Notifier

log = logging.getLogger("logd.health")


class Heartbeat:
    """The time of the scheduler's last proof of life, and what else makes the daemon unwell."""

    def __init__(
        self,
        stale_after: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        alive: Callable[[], bool] = lambda: True,
        stuck: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.alive = alive
        #: Sources whose poll would not stop after its deadline (`Engine.stuck`): a thread
        #: the process cannot take back, so only a restart frees it.
        self.stuck = stuck
        self._last = clock()  # start-up counts as a beat: the scheduler gets one period

    def beat(self) -> None:
        """Called by the heartbeat job each time the scheduler runs it."""
        self._last = self.clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self.clock() - self._last

    def healthy(self) -> bool:
        """True while beats are recent, the scheduler runs and no poll is stuck."""
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the daemon is unhealthy, in a few words; None when it is healthy."""
        if not self.alive():
            return "the scheduler is not running"
        age = self.age()
        if age > self.stale_after:
            return f"the scheduler has not beaten for {age:.0f}s"
        stuck = self.stuck()
        if stuck:
            return f"a poll would not stop after its poll_timeout ({', '.join(stuck)})"
        return None


class Watchdog:
    """Sends `WATCHDOG=1` every `interval` seconds, but only while `heartbeat` is healthy."""

    def __init__(self, notifier: Notifier, heartbeat: Heartbeat, interval: float) -> None:
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.interval = interval
        self.pings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_healthy = True

    def tick(self) -> bool:
        """Ping if healthy; return whether it pinged. Logs each change of health once."""
        problem = self.heartbeat.problem()
        healthy = problem is None
        if healthy != self._was_healthy:
            if healthy:
                log.warning("healthy again; watchdog pings resume")
            else:
                log.error("%s; withholding watchdog pings so that systemd restarts logd", problem)
            self._was_healthy = healthy
        if healthy:
            self.notifier.watchdog()
            self.pings += 1
        return healthy

    def start(self) -> None:
        """Ping from a thread of its own until `stop()`."""
        self._thread = threading.Thread(target=self._run, name="logd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.tick()
        while not self._stop.wait(self.interval):
            self.tick()

    def stop(self) -> None:
        """Stop pinging."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
