"""Log lines on stderr: one per event, journald-friendly when journald is reading."""

from __future__ import annotations

import logging
import os
import sys

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


def setup(level: str) -> None:
    """Route logd's loggers to stderr at `level` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger("logd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
