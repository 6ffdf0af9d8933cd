"""Write transactions that wait their turn: several connections write one SQLite file (the
store's own, a second `logd` process, a migration), so each takes the lock first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock when it begins (`BEGIN IMMEDIATE`), or a
    savepoint inside one already open.

    A deferred `BEGIN` reads first and asks for the lock at its first write; if another
    connection committed in between, SQLite answers SQLITE_BUSY at once, without waiting
    out the busy timeout (the snapshot it read is stale: sqlite.org/lang_transaction.html).
    Taking the lock first makes every writer wait its turn instead.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
