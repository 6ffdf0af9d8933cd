"""Versioned schema migrations of the PostgreSQL store, applied in order and recorded.

The same rules as the SQLite store's (`logd.store.sqlite.migrations`): append new migrations
at the end, never edit one that has shipped; each runs inside the transaction that records it
in `_logd_migrations`, so a crash leaves the database at the previous version. Several daemons
may start at once against one database: an advisory lock held for the transaction makes the
others wait, then find the migrations done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

Migration = Callable[["psycopg.Connection[tuple[object, ...]]"], None]
MIGRATIONS: list[Migration] = []
#: `pg_advisory_xact_lock` key of a migration run (any constant; "logd" in ASCII).
LOCK_KEY = 0x6C6F6764


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration."""
    MIGRATIONS.append(fn)
    return fn


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Apply the migrations this database has not seen; return their names."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _logd_migrations "
            "(name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {str(row[0]) for row in conn.execute("SELECT name FROM _logd_migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ in done:
                continue
            with conn.transaction():
                fn(conn)
                conn.execute("INSERT INTO _logd_migrations (name) VALUES (%s)", [fn.__name__])
            applied.append(fn.__name__)
    return applied


@migration
def m001_initial(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Entries with their words, cursors, poll runs, status changes, the outbox, the daemons'
    schedule and the per-source leases: what the SQLite store has after its m009."""
    # Names and ids compare as code points (COLLATE "C", as SQLite compares them), whatever
    # the database's locale: `ids_starting` ranges over the unique index in that order.
    # `id` is the SQLite store's time key (microseconds since the epoch * 1000 + a slot): the
    # primary key walked backwards is newest first, and a time range is a key range. `words`
    # is the entry's tsvector (search.tsvector). `change_seq` is the number of the entry's
    # latest change (store._Changes): `--follow` and exports read the changes in that order.
    conn.execute(
        """
        CREATE TABLE entries (
            id BIGINT PRIMARY KEY,
            source TEXT COLLATE "C" NOT NULL,
            provider TEXT COLLATE "C" NOT NULL,
            native_id TEXT COLLATE "C" NOT NULL,
            timestamp TEXT NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            error TEXT,
            entity_type TEXT,
            entity_id TEXT,
            raw TEXT,
            details TEXT,
            search_text TEXT,
            hash TEXT NOT NULL,
            details_hash TEXT,
            timestamp_observed BOOLEAN NOT NULL DEFAULT false,
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            words TSVECTOR NOT NULL,
            change_seq BIGINT NOT NULL,
            UNIQUE (source, native_id)
        )
        """
    )
    # (column, id): "WHERE source = $1 ORDER BY id DESC" walks one index, no sort.
    conn.execute("CREATE INDEX entries_source_id ON entries (source, id)")
    conn.execute("CREATE INDEX entries_status_id ON entries (status, id)")
    conn.execute("CREATE INDEX entries_provider_id ON entries (provider, id)")
    conn.execute("CREATE INDEX entries_words ON entries USING gin (words)")
    conn.execute("CREATE INDEX entries_changes ON entries (change_seq)")
    conn.execute(
        "CREATE TABLE cursors (source TEXT PRIMARY KEY, cursor TEXT, updated_at TEXT NOT NULL)"
    )
    # `holder`: the instance (host:pid) running the poll; `pid` alone means nothing on
    # another host.
    conn.execute(
        """
        CREATE TABLE poll_runs (
            id BIGSERIAL PRIMARY KEY,
            source TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            pages INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            new INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            pid INTEGER,
            holder TEXT,
            waiting TEXT,
            waiting_until TEXT
        )
        """
    )
    conn.execute("CREATE INDEX poll_runs_source ON poll_runs (source, id)")
    conn.execute(
        """
        CREATE TABLE status_changes (
            id BIGSERIAL PRIMARY KEY,
            entry BIGINT NOT NULL,
            source TEXT NOT NULL,
            native_id TEXT NOT NULL,
            old_status TEXT NOT NULL,
            new_status TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )
    # One row per delivery to any sink. `claimed_by`/`claimed_until`: the instance sending it
    # (claimed with FOR UPDATE SKIP LOCKED); after `claimed_until` another may take it over.
    conn.execute(
        """
        CREATE TABLE outbox (
            id BIGSERIAL PRIMARY KEY,
            delivery_id TEXT NOT NULL UNIQUE,
            sink TEXT NOT NULL,
            source TEXT NOT NULL,
            provider TEXT NOT NULL,
            count INTEGER NOT NULL,
            body BYTEA NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_status INTEGER,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            claimed_by TEXT,
            claimed_until TIMESTAMPTZ
        )
        """
    )
    conn.execute("CREATE INDEX outbox_due ON outbox (sink, state, id)")
    conn.execute("CREATE INDEX outbox_source ON outbox (source, state)")
    # Each daemon keeps its own rows: one daemon starting never clears another's.
    conn.execute(
        """
        CREATE TABLE daemon_schedule (
            daemon TEXT NOT NULL,
            source TEXT NOT NULL,
            next_run TEXT,
            interval DOUBLE PRECISION NOT NULL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (daemon, source)
        )
        """
    )
    # A source is polled by the holder of its lease. `token` comes from a sequence and grows
    # with every new holding, so a holder that lapsed can never match the current one
    # (fencing); a released lease keeps its row and token, expired.
    conn.execute("CREATE SEQUENCE lease_tokens")
    conn.execute(
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            token BIGINT NOT NULL,
            acquired_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    # How far each sink that follows the change sequence (an export) got.
    conn.execute(
        "CREATE TABLE sink_positions (sink TEXT PRIMARY KEY, seq BIGINT NOT NULL, "
        "updated_at TEXT NOT NULL)"
    )


@migration
def m002_copy_progress(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """`_logd_copy`: how far `logd migrate-store` got copying each SQLite store in."""
    # One row per store copied in (its absolute path), moved forward in the transaction that
    # stores each chunk: a copy that was killed resumes after the last chunk it committed.
    conn.execute(
        """
        CREATE TABLE _logd_copy (
            origin TEXT PRIMARY KEY,
            last_entry BIGINT NOT NULL DEFAULT -1,
            last_run BIGINT NOT NULL DEFAULT 0,
            last_delivery BIGINT NOT NULL DEFAULT 0,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            finished_at TIMESTAMPTZ
        )
        """
    )
