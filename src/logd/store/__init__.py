"""Where entries live: `interface` (the Protocols every backend implements and the value
types), the search language users type (`query_language`, parsed once for every backend),
the SQLite store (`sqlite`) and the PostgreSQL store (`postgres`).

`open_store(database)` and `open_reader(database)` pick the backend from the configured
`database`: a file path is SQLite, a `postgresql://` URL is PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logd.config.paths import Database
    from logd.store.interface import Store


def open_store(database: Database | str, *, create: bool = True) -> Store:
    """The store at `database`, created and migrated when `create` (else it must exist).

    Raises StoreError, one line saying what to do, when it cannot be opened.
    """
    url = _url(database)
    if url is not None:
        from logd.store.postgres import PostgresStore

        return PostgresStore(url, create=create)
    from logd.store.sqlite.store import Store as SqliteStore

    return SqliteStore(Path(str(database)), create=create)


def open_reader(database: Database | str) -> Store:
    """An existing store opened for the read commands: no migrations, and for SQLite neither
    sqlite_utils nor a write lock (`logd query` starts in a fraction of the time)."""
    url = _url(database)
    if url is not None:
        from logd.store.postgres import PostgresStore

        return PostgresStore(url, create=False)
    from logd.store.sqlite.reader import Reader

    return Reader(Path(str(database)))


def _url(database: Database | str) -> str | None:
    if isinstance(database, str | Path):
        text = str(database)
        return text if text.startswith(("postgresql://", "postgres://")) else None
    return database.secret()
