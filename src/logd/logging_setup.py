"""Log lines on stderr: one per event, journald-friendly when journald is reading."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

from logd.redact import SecretFilter

# syslog priorities that journald reads from a `<N>` prefix.
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<N>logger: message`, no timestamp: journald stamps each line itself."""

    def format(self, record: logging.LogRecord) -> str:
        """One line with the journald priority prefix."""
        text = super().format(record).replace("\n", " | ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"


def formatter() -> logging.Formatter:
    """`12:00:00Z INFO logd.engine: …`: times in UTC like every table (logd.timeparse)."""
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%SZ")
    plain.converter = time.gmtime
    return plain


def setup(level: str) -> None:
    """Route logd's loggers to stderr at `level` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(formatter())
    # Every line passes the mask: no registered credential is printed, at any level.
    handler.addFilter(SecretFilter())
    root = logging.getLogger("logd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # At debug level the wire traffic (httpx requests, httpcore connections) is shown too,
    # through the same masked handler; otherwise those loggers stay quiet.
    debug = level.lower() == "debug"
    for name in ("httpx", "httpcore"):
        lib = logging.getLogger(name)
        lib.handlers[:] = [handler] if debug else []
        lib.setLevel(logging.DEBUG if debug else logging.NOTSET)
        lib.propagate = not debug


class ConsoleHandler(logging.Handler):
    """Prints each log line through a rich console, above its live display (not markup)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        """One line, as the stderr handler would write it."""
        from rich.text import Text

        try:
            self.console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:  # a log line must never break the poll that logs it
            self.handleError(record)


@contextmanager
def through(console: Console) -> Iterator[None]:
    """While inside, logd's log lines go through `console` (a live progress display's)."""
    root = logging.getLogger("logd")
    saved = root.handlers[:]
    handler = ConsoleHandler(console)
    handler.setFormatter(saved[0].formatter if saved and saved[0].formatter else formatter())
    handler.addFilter(SecretFilter())  # masked like every other line
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved
