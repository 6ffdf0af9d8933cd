"""Opening a store to read it: plain sqlite3, no migrations, no sqlite_utils.

`query`, `show`, `status` and `stats` run once per command line and then exit, so their
start-up time is most of what a user waits for. Importing sqlite_utils (and the sqlite_utils
plugins its `Database` loads) costs more than the query itself, and a reader needs none of it:
the store's read methods only run SQL. `Reader` is a `Store` whose `db` is the small part of
`sqlite_utils.Database` those methods use; writing through it raises `StoreError`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from logd.errors import StoreError
from logd.store.sqlite import store as _store
from logd.store.sqlite.search import FTS_COLUMNS, LEGACY_ENTRY_COLUMNS
from logd.store.sqlite.store import Store, store_errors

if TYPE_CHECKING:
    import sqlite_utils


class _Table:
    """`db[name]`, only for `.exists()`."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn, self.name = conn, name

    def exists(self) -> bool:
        """Whether the table is in the file (a store may predate it)."""
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [self.name]
        ).fetchone()
        return row is not None


class ReadDatabase:
    """What the store's read methods use of `sqlite_utils.Database`, on a sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> sqlite3.Cursor:
        """Run one statement."""
        if parameters is None:
            return self.conn.execute(sql)
        return self.conn.execute(sql, parameters)

    def __getitem__(self, name: str) -> _Table:
        return _Table(self.conn, name)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class Reader(Store):
    """An existing store, opened for the read methods only (no migrations, no sqlite_utils)."""

    def __init__(  # replaces Store.__init__, never calls it
        self, path: str | Path, *, busy_timeout: float | None = None
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.lock = threading.RLock()
        self._readonly = True
        self._outbox_reader = None
        self._claims = {}
        self._claims_lock = threading.Lock()
        self.busy_timeout = _store.BUSY_TIMEOUT_MS / 1000 if busy_timeout is None else busy_timeout
        if not self.path.exists():
            raise StoreError(
                f"no logd database at {self.path}",
                hint="run `logd sync` first, or pass --db / -c for another store",
            )
        with store_errors(self.path, self.busy_timeout):
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, check_same_thread=False
            )
            database = ReadDatabase(conn)
            # Typed as the Database it stands in for: the read methods use only what it has.
            self.db = cast("sqlite_utils.Database", database)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not database["entries"].exists():
                conn.close()
                raise StoreError(f"{self.path} is not a logd database (no entries table)")
            conn.execute("PRAGMA cache_size = -32000")  # as Store: keeps index pages hot
            self._variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # as Store
            columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
            if "timestamp_observed" not in columns:  # not migrated yet: readers never migrate
                self.entry_columns = LEGACY_ENTRY_COLUMNS
            fts = {row[1] for row in conn.execute("PRAGMA table_info(entries_fts)")}
            self.grouped_fts = FTS_COLUMNS[-1] in fts  # m015's columns, or filters in SQL

    def transaction(self) -> NoReturn:
        """Every write goes through here; a reader has none."""
        raise StoreError(f"{self.path} was opened read-only")
