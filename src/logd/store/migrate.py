"""Moving a store from one backend to another: `logd migrate-store`'s work, behind one call.

The only place that holds both backends: the SQLite store read out in key order
(`sqlite.export`) and written into PostgreSQL (`postgres.copy`), so the CLI imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from logd.store.postgres.copy import CHUNK, CopyResult, copy_sqlite
from logd.store.postgres.store import PostgresStore
from logd.store.sqlite.export import SqliteExport

__all__ = ["CopyResult", "sqlite_to_postgres"]


def sqlite_to_postgres(
    path: Path,
    url: str,
    *,
    chunk: int = CHUNK,
    started: Callable[[str, str], None] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> CopyResult:
    """Copy the SQLite store at `path` into the PostgreSQL database `url` and verify it
    (`postgres.copy.copy_sqlite`); `started(from, to)` names both (password masked) first.
    Raises StoreError."""
    source = SqliteExport(path)
    try:
        with PostgresStore(url) as target:
            if started is not None:
                started(str(source.path), target.location)
            return copy_sqlite(source, target, chunk=chunk, progress=progress)
    finally:
        source.close()
