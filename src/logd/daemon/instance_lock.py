"""One `logd run` per store: an advisory lock on `<database>.lock`, held for the daemon's life.

Two daemons on one database would poll every source twice and send every alert twice, and
SQLite would happily let them. `flock` is released by the kernel when the holder exits, even
on SIGKILL, so a crashed daemon never leaves a stale lock behind; the file keeps the holder's
PID only so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from logd.errors import LogdError


class AlreadyRunning(LogdError):
    """Another `logd run` holds the store's lock."""

    exit_code = 2


def lock_path(database: Path) -> Path:
    """The lock file beside the store: `logd.db` → `logd.db.lock`."""
    return database.with_name(database.name + ".lock")


class InstanceLock:
    """An exclusive, non-blocking `flock` on the store's lock file; `release` or exit frees it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `AlreadyRunning` naming the PID that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LogdError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another `logd run` (PID {holder}) is already using {self.database} "
                f"(it holds {self.path})",
                hint="stop it first (systemctl stop logd, or kill PID); one daemon per database",
            ) from None
        os.fchmod(fd, 0o600)  # a file left by an older umask is made owner-only too
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent); the file stays, empty of meaning once unlocked."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
