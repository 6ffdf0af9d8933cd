"""Versioned schema migrations, applied in order and recorded in `_logd_migrations`.

Append new migrations at the end; never edit one that has shipped. Each runs inside the
transaction that records it, so a crash leaves the store at the previous version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from logd.store.sqlite.locking import immediate

if TYPE_CHECKING:  # annotations only: the read commands import the store without sqlite_utils
    import sqlite_utils

Migration = Callable[["sqlite_utils.Database"], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration."""
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations this database has not seen; return their names."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _logd_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM _logd_migrations").fetchall()}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with immediate(db):
            # Another process may have applied it since the names were read: look again
            # now that this one holds the write lock.
            if db.execute(
                "SELECT 1 FROM _logd_migrations WHERE name = ?", [fn.__name__]
            ).fetchone():
                continue
            fn(db)
            db.execute(
                "INSERT INTO _logd_migrations (name, applied_at) VALUES (?, ?)",
                [fn.__name__, datetime.now(UTC).isoformat()],
            )
        applied.append(fn.__name__)
    return applied


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    """Entries keyed by time, their FTS index, cursors, poll runs and status changes."""
    # `id` orders entries by timestamp (microseconds since the epoch * 1000 + a slot), so
    # newest-first is a walk down the primary key and FTS5 hands matches back in that order.
    db.execute(
        """
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            provider TEXT NOT NULL,
            native_id TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            status TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            error TEXT,
            entity_type TEXT,
            entity_id TEXT,
            raw TEXT,
            details TEXT,
            search_text TEXT,
            hash TEXT NOT NULL,
            details_hash TEXT,
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (source, native_id)
        )
        """
    )
    db.execute("CREATE INDEX entries_status ON entries (status)")
    # Single-column indexes end in the rowid, so "WHERE source = ? ORDER BY id DESC" needs no sort.
    db.execute("CREATE INDEX entries_source ON entries (source)")
    db.execute("CREATE INDEX entries_source_status ON entries (source, status)")
    db.execute("CREATE INDEX entries_provider ON entries (provider)")
    db.execute("CREATE INDEX entries_updated ON entries (updated_at)")
    db.table("entries").enable_fts(["message", "error", "search_text"], create_triggers=True)
    db.execute(
        """
        CREATE TABLE cursors (
            source TEXT PRIMARY KEY,
            cursor TEXT,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE poll_runs (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            pages INTEGER NOT NULL DEFAULT 0,
            requests INTEGER NOT NULL DEFAULT 0,
            new INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX poll_runs_source ON poll_runs (source, id)")
    db.execute(
        """
        CREATE TABLE status_changes (
            id INTEGER PRIMARY KEY,
            entry INTEGER NOT NULL,
            source TEXT NOT NULL,
            native_id TEXT NOT NULL,
            old_status TEXT NOT NULL,
            new_status TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE VIEW failures AS
        SELECT source || ':' || native_id AS entry_id, timestamp, source, provider, message,
               error, entity_type, entity_id
        FROM entries WHERE status = 'failure' ORDER BY id DESC
        """
    )
    db.execute(
        """
        CREATE VIEW latest AS
        SELECT source || ':' || native_id AS entry_id, timestamp, source, provider, status,
               message, error
        FROM entries ORDER BY id DESC LIMIT 1000
        """
    )


@migration
def m002_webhook_outbox(db: sqlite_utils.Database) -> None:
    """The webhook outbox: one row per delivery, queued with the batch that caused it."""
    # `body` holds the exact bytes that are signed and sent, fixed when the row is queued, so
    # every retry sends the same thing under the same delivery id.
    db.execute(
        """
        CREATE TABLE webhook_outbox (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT NOT NULL UNIQUE,
            webhook TEXT NOT NULL,
            source TEXT NOT NULL,
            provider TEXT NOT NULL,
            count INTEGER NOT NULL,
            body BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_status INTEGER,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at)")
    db.execute("CREATE INDEX webhook_outbox_source ON webhook_outbox (source, state)")


@migration
def m003_daemon_schedule(db: sqlite_utils.Database) -> None:
    """When the running daemon will next poll each source, for `logd status`."""
    # Written by `logd run` only; a clean shutdown empties it, so rows mean "scheduled now".
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS daemon_schedule (
            source TEXT PRIMARY KEY,
            next_run TEXT,
            interval REAL NOT NULL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )
        """
    )


@migration
def m004_fts_written_per_batch(db: sqlite_utils.Database) -> None:
    """New entries reach the FTS index in one statement per batch, not by a per-row trigger."""
    # Measured on a FleetIT backfill: the AFTER INSERT trigger made FTS5 index row by row at
    # about half the speed of one INSERT … SELECT over the batch's new rows, which the store
    # now runs in the same transaction. The update and delete triggers stay: those are rare.
    db.execute("DROP TRIGGER IF EXISTS entries_ai")


@migration
def m005_drop_updated_index(db: sqlite_utils.Database) -> None:
    """Drop `entries_updated`: no query reads entries by `updated_at`, and every insert paid it."""
    # 3 % of the instructions a backfill spends per stored entry, measured under callgrind.
    db.execute("DROP INDEX IF EXISTS entries_updated")


@migration
def m006_fold_and_tag_fts(db: sqlite_utils.Database) -> None:
    """The store keeps the FTS index in step itself: the update and delete triggers go.

    `fold` (case and accents beyond ASCII: Turkish dotless i, Greek accents, final sigma, ß)
    runs in Python, which a trigger cannot call, so the store indexes and un-indexes rows
    itself (`search.index_text`). Re-indexing every row folded and with tag words is m015's,
    which builds the index in the layout `index_text` writes now.
    """
    db.execute("DROP TRIGGER IF EXISTS entries_au")
    db.execute("DROP TRIGGER IF EXISTS entries_ad")


@migration
def m007_observed_time(db: sqlite_utils.Database) -> None:
    """`entries.timestamp_observed`: 1 when the time is when logd first saw the record."""
    # Some vendors give no time (Elastic Path logs without `created_at`): such an entry's time
    # is its first sighting, which readers and webhooks must not take for when it happened.
    # Entries stored before this migration stay 0: their providers' records are not re-read.
    db.execute("ALTER TABLE entries ADD COLUMN timestamp_observed INTEGER NOT NULL DEFAULT 0")


@migration
def m008_poll_run_pid(db: sqlite_utils.Database) -> None:
    """`poll_runs.pid`: the process running the poll, so `status` can tell running from dead."""
    # A run with no `finished` is "polling" only while its process lives; one left by a process
    # that was killed would otherwise look like a poll running forever.
    db.execute("ALTER TABLE poll_runs ADD COLUMN pid INTEGER")


@migration
def m009_poll_waiting(db: sqlite_utils.Database) -> None:
    """`poll_runs.waiting`/`waiting_until`: what a running poll waits on, and until when (UTC)."""
    # A poll held back by its rate budget or a vendor's Retry-After sends nothing for a while;
    # `status` says so instead of showing a poll that looks stuck. Cleared when the poll ends.
    db.execute("ALTER TABLE poll_runs ADD COLUMN waiting TEXT")
    db.execute("ALTER TABLE poll_runs ADD COLUMN waiting_until TEXT")


@migration
def m010_outbox_sinks(db: sqlite_utils.Database) -> None:
    """The outbox holds deliveries for any sink: `webhook` becomes `sink`, and a delivery can
    be claimed (`claimed_by`, `claimed_until`, `claimed_pid`) so two senders never send the
    same row."""
    # Rows queued before keep their webhook's name as their sink: a webhook is a sink.
    db.execute("ALTER TABLE webhook_outbox RENAME COLUMN webhook TO sink")
    db.execute("ALTER TABLE webhook_outbox ADD COLUMN claimed_by TEXT")
    db.execute("ALTER TABLE webhook_outbox ADD COLUMN claimed_until TEXT")
    # The claiming process: every user of the file is on this host, so a claim of a process
    # that is gone (killed mid-round) is void at once, not at its expiry.
    db.execute("ALTER TABLE webhook_outbox ADD COLUMN claimed_pid INTEGER")
    # A sink's lane reads its pending rows in queue order: (sink, state, id) answers it.
    db.execute("CREATE INDEX IF NOT EXISTS webhook_outbox_sink ON webhook_outbox (sink, state, id)")


@migration
def m011_change_sequence(db: sqlite_utils.Database) -> None:
    """`entries.change`: a number from one counter, set on every insert and change of an
    entry, indexed, so `query --follow` and exports read "what changed after N" as a range."""
    # m005 dropped the `updated_at` index, so following by `updated_at` scanned and sorted
    # the table every second. A counter row (not max(change) + 1) never hands a number out
    # twice, even when retention deletes the entry that held the largest one. Entries stored
    # before keep no number (NULL, never "after" any): numbering them would rewrite every row
    # of a large store in one transaction (its WAL as large as the file), and what follows
    # the sequence starts from now; a changed one gets its number then.
    db.execute("ALTER TABLE entries ADD COLUMN change INTEGER")
    db.execute(
        "CREATE TABLE IF NOT EXISTS change_counter "
        "(id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)"
    )
    db.execute("INSERT INTO change_counter (id, last) VALUES (1, 0)")
    db.execute("CREATE UNIQUE INDEX entries_change ON entries (change)")


@migration
def m012_schedule_per_daemon(db: sqlite_utils.Database) -> None:
    """`daemon_schedule` rows belong to a daemon: primary key (daemon, source)."""
    # Several daemons may schedule one source (each polls it when it holds its lease), so
    # each keeps its own row, and a daemon starting or stopping clears only its own rows.
    # Rows written before have no daemon: '' (a clean start of any daemon clears them, as
    # every start cleared every row before).
    db.execute(
        """
        CREATE TABLE daemon_schedule_new (
            daemon TEXT NOT NULL,
            source TEXT NOT NULL,
            next_run TEXT,
            interval REAL NOT NULL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (daemon, source)
        )
        """
    )
    db.execute(
        "INSERT INTO daemon_schedule_new (daemon, source, next_run, interval, "
        "consecutive_failures, updated_at) SELECT '', source, next_run, interval, "
        "consecutive_failures, updated_at FROM daemon_schedule"
    )
    db.execute("DROP TABLE daemon_schedule")
    db.execute("ALTER TABLE daemon_schedule_new RENAME TO daemon_schedule")


@migration
def m013_leases(db: sqlite_utils.Database) -> None:
    """`leases`: who may poll a source (`source:<name>`) or drive a sink, until when."""
    # `token` grows with every change of holder: a write fenced by an older token is refused.
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            token INTEGER NOT NULL,
            expires_at TEXT NOT NULL
        )
        """
    )


@migration
def m014_sink_positions(db: sqlite_utils.Database) -> None:
    """`sink_positions`: how far along the change sequence a sink that exports it got."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS sink_positions (
            sink TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )


@migration
def m015_fts_columns_per_status(db: sqlite_utils.Database) -> None:
    """`entries_fts` again, with a group of columns per status; every row indexed anew.

    An entry's words go to its status's columns (`search.STATUS_GROUPS`; success in
    `message`, `error`, `search_text`), so a search with `--status` limits its words to them
    and FTS5 skips other statuses within the text's own doclist: no word is stored twice.
    Each row is indexed folded, with the tag words of its status, source and provider. The
    table stays `entries_fts` with `content="entries"`, which Datasette's `_search` and
    sqlite-utils' `search` find; they match a word in any column (the status's own
    columns, `_search_failure_message`, match within one status).
    """
    from .search import FTS_COLUMNS, STATUS_GROUPS, TEXT_COLUMNS, index_text

    # FTS5 reads an external content table's columns by the index's column names (a scan,
    # highlight()): each group's names are generated columns of `entries`, never stored.
    for status in STATUS_GROUPS:
        for column in TEXT_COLUMNS:
            db.execute(
                f"ALTER TABLE entries ADD COLUMN {status}_{column} TEXT GENERATED ALWAYS AS "
                f"(CASE WHEN status = '{status}' THEN {column} END) VIRTUAL"
            )
    db.execute("DROP TABLE IF EXISTS entries_fts")
    columns = ", ".join(f'"{c}"' for c in FTS_COLUMNS)
    db.execute(f'CREATE VIRTUAL TABLE "entries_fts" USING FTS5 ({columns}, content="entries")')
    last = -1
    while True:
        # In key order, 5,000 rows at a time: a large store is never held in memory.
        (found,) = db.execute(
            "SELECT json_group_array(id) FROM "
            "(SELECT id FROM entries WHERE id > ? ORDER BY id LIMIT 5000)",
            [last],
        ).fetchone()
        keys = json.loads(found)
        if not keys:
            break
        index_text(db, keys)
        last = keys[-1]
