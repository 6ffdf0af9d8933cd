"""Where entries live: the interface every backend implements (`interface`), the search
language users type (`query_language`, parsed once for every backend), and the backends:
`sqlite` (one file) and, by URL, `postgres` (a shared server).

    store = open_store(settings.database)      # read-write, created and migrated
    reader = open_reader(database)             # read-only, light: `query`, `status`, `stats`

Nothing here imports a backend until a store is opened, so importing `logd.store.interface`
stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from logd.errors import StoreError

if TYPE_CHECKING:
    from logd.config.paths import DatabaseURL
    from logd.store.interface import Store

__all__ = ["open_reader", "open_store"]

#: URL schemes of a PostgreSQL store (`postgresql://user@host/db`), as libpq spells them.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _is_postgres(database: str | Path | DatabaseURL) -> bool:
    if not isinstance(database, str | Path):
        return True  # a DatabaseURL: the config read it as a PostgreSQL URL
    return isinstance(database, str) and database.lower().startswith(POSTGRES_SCHEMES)


def _url(database: str | Path | DatabaseURL) -> str:
    return str(database) if isinstance(database, str | Path) else database.secret()


def open_store(database: str | Path | DatabaseURL, *, create: bool = True) -> Store:
    """The read-write store at `database`: a `postgresql://` URL, else an SQLite file path
    (with `create`, made if missing). Migrated to the current schema. Raises StoreError."""
    if _is_postgres(database):
        return _postgres(_url(database), create=create, readonly=False)
    from logd.store.sqlite.store import Store as SqliteStore

    assert isinstance(database, str | Path)
    return SqliteStore(database, create=create)


def open_reader(database: str | Path | DatabaseURL) -> Store:
    """The existing store at `database`, opened for reading only, without migrating it and
    without the writer's imports (`logd query` starts fast). Writes raise StoreError."""
    if _is_postgres(database):
        return _postgres(_url(database), create=False, readonly=True)
    from logd.store.sqlite.reader import Reader

    assert isinstance(database, str | Path)
    return Reader(database)


def _postgres(url: str, *, create: bool, readonly: bool) -> Store:
    """The PostgreSQL store at `url`, when that backend is installed."""
    try:
        from logd.store import postgres  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        raise StoreError(
            "database is a PostgreSQL URL, but this logd has no PostgreSQL backend",
            hint="set `database` to an SQLite file path, or install a logd with "
            "logd.store.postgres",
        ) from None
    opener = postgres.open_reader if readonly else postgres.open_store
    store: Store = opener(url, create=create) if not readonly else opener(url)
    return store
