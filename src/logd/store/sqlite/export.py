"""Reading a SQLite store out in key order, for `logd migrate-store` (copy to another backend).

Plain sqlite3 on a read-only connection: the file is never written (a store not migrated to
the latest version is read as it is, absent columns as their defaults). Every read is bounded
(`limit` rows after a key), so a large store is never held in memory, and a copy can resume
after the last key it stored.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from logd.errors import StoreError
from logd.store.sqlite.store import store_error

#: Columns of an entry as copied, in this order (absent columns of an old store: defaults).
ENTRY_FIELDS = (
    "id",
    "source",
    "provider",
    "native_id",
    "timestamp",
    "status",
    "message",
    "error",
    "entity_type",
    "entity_id",
    "raw",
    "details",
    "search_text",
    "hash",
    "details_hash",
    "timestamp_observed",
    "first_seen",
    "updated_at",
)
OUTBOX_FIELDS = (
    "id",
    "delivery_id",
    "sink",
    "source",
    "provider",
    "count",
    "body",
    "state",
    "attempts",
    "next_attempt_at",
    "last_status",
    "last_error",
    "created_at",
    "updated_at",
)
RUN_FIELDS = (
    "id",
    "source",
    "started",
    "finished",
    "pages",
    "requests",
    "new",
    "updated",
    "failures",
    "error",
    "pid",
    "waiting",
    "waiting_until",
)
#: What a column absent from an old store reads as (`sink` was `webhook` before m010).
_DEFAULTS = {
    "timestamp_observed": "0",
    "pid": "NULL",
    "waiting": "NULL",
    "waiting_until": "NULL",
    "sink": "webhook",
}


class SqliteExport:
    """An existing SQLite store, read in key order (entries, poll runs, outbox) and whole
    (cursors)."""

    def __init__(self, path: str | Path) -> None:
        """Open the store at `path` read-only; StoreError when it is missing or not a store."""
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no logd database at {self.path}")
        try:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self.tables = {
                r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, 10.0) from exc
        if "entries" not in self.tables:
            raise StoreError(f"{self.path} is not a logd database (no entries table)")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def _columns(self, table: str, fields: tuple[str, ...]) -> str:
        have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        return ", ".join(f if f in have else f"{_DEFAULTS[f]} AS {f}" for f in fields)

    def _read(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, 10.0) from exc

    def counts(self) -> dict[str, int]:
        """Rows per table: entries, cursors, poll_runs, outbox (0 for a table the file lacks)."""
        out = {}
        for name, table in (
            ("entries", "entries"),
            ("cursors", "cursors"),
            ("poll_runs", "poll_runs"),
            ("outbox", "webhook_outbox"),
        ):
            out[name] = (
                int(self._read(f"SELECT count(*) FROM {table}", [])[0][0])
                if table in self.tables
                else 0
            )
        return out

    def entries(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` entries with keys above `after`, in key order (ENTRY_FIELDS)."""
        return self._read(
            f"SELECT {self._columns('entries', ENTRY_FIELDS)} FROM entries "
            "WHERE id > ? ORDER BY id LIMIT ?",
            [after, limit],
        )

    def poll_runs(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` poll runs with ids above `after`, in id order (RUN_FIELDS)."""
        if "poll_runs" not in self.tables:
            return []
        return self._read(
            f"SELECT {self._columns('poll_runs', RUN_FIELDS)} FROM poll_runs "
            "WHERE id > ? ORDER BY id LIMIT ?",
            [after, limit],
        )

    def outbox(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` deliveries with ids above `after`, in id order (OUTBOX_FIELDS)."""
        if "webhook_outbox" not in self.tables:
            return []
        return self._read(
            f"SELECT {self._columns('webhook_outbox', OUTBOX_FIELDS)} FROM webhook_outbox "
            "WHERE id > ? ORDER BY id LIMIT ?",
            [after, limit],
        )

    def cursors(self) -> list[tuple[Any, ...]]:
        """Every source's cursor: (source, cursor JSON text, updated_at)."""
        return self._read("SELECT source, cursor, updated_at FROM cursors ORDER BY source", [])

    def outbox_states(self) -> dict[str, int]:
        """Deliveries per state (pending, dead, done)."""
        if "webhook_outbox" not in self.tables:
            return {}
        rows = self._read("SELECT state, count(*) FROM webhook_outbox GROUP BY state", [])
        return {str(r[0]): int(r[1]) for r in rows}
