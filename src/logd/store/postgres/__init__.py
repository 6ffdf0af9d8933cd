"""The PostgreSQL store: one database shared by several `logd run` instances.

`logd.store.open_store` / `open_reader` come here for a `postgresql://` URL. The modules:
`store` (the interface's implementation: leases, claims, the change sequence), `search` (the
search language as `tsquery`, words cut as FTS5 cuts them), `migrations`, `copy` (a SQLite
store copied in) and `cluster` (a throwaway server for tests and benchmarks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logd.store.postgres.store import PostgresStore

__all__ = ["open_reader", "open_store"]


def open_store(url: str, *, create: bool = True) -> PostgresStore:
    """The read-write store at `url`, its schema brought up to date (with `create`)."""
    from logd.store.postgres.store import PostgresStore

    return PostgresStore(url, create=create)


def open_reader(url: str, *, create: bool = False) -> PostgresStore:
    """The existing store at `url`, read-only (the server refuses writes), not migrated;
    `create` is accepted for symmetry with `open_store` and means nothing here."""
    from logd.store.postgres.store import PostgresStore

    return PostgresStore(url, readonly=True, max_connections=2)
