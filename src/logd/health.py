"""Is the daemon's scheduler alive? A heartbeat job proves it; the watchdog pings only then.

The scheduler runs a tiny job every few seconds on an executor of its own (so long polls never
delay it) that calls `Heartbeat.beat()`. A separate thread, outside the scheduler, sends
systemd's `WATCHDOG=1` only while the last beat is recent. If the scheduler's loop dies or
wedges, the beats stop, the pings stop, and systemd restarts the service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .notify import Notifier

log = logging.getLogger("logd.health")


class Heartbeat:
    """The time of the scheduler's last proof of life."""

    def __init__(
        self,
        stale_after: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.alive = alive
        self._last = clock()  # start-up counts as a beat: the scheduler gets one period

    def beat(self) -> None:
        """Called by the heartbeat job each time the scheduler runs it."""
        self._last = self.clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self.clock() - self._last

    def healthy(self) -> bool:
        """True while beats are recent and the scheduler says it is running."""
        return self.age() <= self.stale_after and self.alive()


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
        healthy = self.heartbeat.healthy()
        if healthy != self._was_healthy:
            if healthy:
                log.warning("scheduler is beating again; watchdog pings resume")
            else:
                log.error(
                    "scheduler has not beaten for %.0fs; withholding watchdog pings so that "
                    "systemd restarts logd",
                    self.heartbeat.age(),
                )
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
