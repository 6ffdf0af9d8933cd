"""The systemd notify protocol, spoken directly: one datagram per message to `$NOTIFY_SOCKET`.

No compiled dependency: the protocol is `KEY=value` lines sent over an AF_UNIX datagram socket
whose path is in `NOTIFY_SOCKET` (a leading `@` means the abstract namespace). Outside systemd
the variable is unset and every call is a no-op, so the daemon never checks where it runs.

    notifier = Notifier.from_environment()
    notifier.ready()                      # READY=1, once sources are scheduled
    notifier.status("2 sources, 0 failing")
    notifier.watchdog()                   # WATCHDOG=1, while the scheduler is healthy
    notifier.stopping()                   # STOPPING=1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger("logd.notify")


class Notifier:
    """Sends notify messages to systemd (or to whatever bound `NOTIFY_SOCKET`, in tests)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls) -> Notifier:
        """A notifier for `$NOTIFY_SOCKET`, or a silent one when it is unset."""
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; False (logged) when it cannot be sent."""
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # abstract namespace
        payload = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                    self._sock = socket.socket(socket.AF_UNIX, kind)
                self._sock.sendto(payload, target)
            except BlockingIOError:
                # The reader's queue is full. Waiting would stall the poll threads that report
                # their STATUS; a dropped message is replaced by the next one.
                log.debug("notify socket %s is full; message dropped", self.address)
                return False
            except OSError as exc:
                # A lost notification must never take the daemon down; systemd will notice.
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: start-up (or a reload) is complete."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def reloading(self) -> bool:
        """`RELOADING=1` with the monotonic time systemd asks for; `ready()` ends it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        """`STATUS=…`: the one line `systemctl status` shows."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: the keep-alive ping."""
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        """`STOPPING=1`: shutdown has begun."""
        return self.send("STOPPING=1")

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None when off.

    `WATCHDOG_PID`, when set, names the process the watchdog is for; any other process
    (a child that inherited the environment) must not ping.
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
