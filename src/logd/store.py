"""The SQLite store: entries with full-text search, cursors, poll runs.

One file, WAL, owner-only permissions. Writers share one connection behind a lock (the store
has one writer at a time); readers in other processes read while it writes. The store knows
nothing of HTTP, providers or the terminal.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .entries import Entry, Status, searchable_text
from .errors import QueryError, StoreError
from .migrations import migrate
from .rows import Prepared, prepare
from .search import (
    ENTRY_COLUMNS,
    SLOTS,
    Filters,
    Row,
    Texts,
    index_text,
    search_sql,
    time_key,
)

if TYPE_CHECKING:  # imported in Store.__init__: logd.reader opens stores without it
    import sqlite_utils

__all__ = ["BatchHook", "BatchResult", "Filters", "Row", "Store", "time_key"]

BUSY_TIMEOUT_MS = 10_000
#: WAL size that triggers a checkpoint (SQLite's default is 1,000 pages, 4 MB at 4 KiB).
WAL_CHECKPOINT_BYTES = 40 * 2**20
INSERT_ENTRY = (
    "INSERT INTO entries (id, source, native_id, provider, timestamp, status, message, error, "
    "entity_type, entity_id, raw, details, search_text, hash, details_hash, first_seen, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


#: Rows per multi-row INSERT (bounded again by the connection's variable limit).
ROWS_PER_INSERT = 500


@lru_cache(maxsize=64)
def _insert_rows_sql(n: int) -> str:
    """INSERT_ENTRY for `n` rows in one statement: `?1` is the source, `?2` the time now
    (shared by every row), then each row's own ROW_VALUES values in order."""
    rows = []
    for i in range(n):
        own = [f"?{3 + i * ROW_VALUES + j}" for j in range(ROW_VALUES)]
        # Column order of INSERT_ENTRY: id, source, native_id, …, details_hash, first_seen,
        # updated_at.
        rows.append(f"({own[0]}, ?1, {', '.join(own[1:])}, ?2, ?2)")
    return INSERT_ENTRY.split(" VALUES ")[0] + " VALUES " + ", ".join(rows)


#: Values bound per row by `_insert_rows_sql`: id, native_id and `Prepared.columns`.
ROW_VALUES = 14


def unindex_text(db: sqlite_utils.Database, keys: list[int]) -> None:
    """Take these stored entries out of the FTS index; call before changing or deleting them."""
    index_text(db, keys, delete=True)


@dataclass
class BatchResult:
    """What committing one batch changed."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Entries that are failures now and were not before (new failures, pending → failure).
    new_failures: list[Entry] = field(default_factory=list)


#: Called inside the batch's transaction with what the batch changed, so that work depending
#: on it (webhook outbox rows) commits or rolls back with the entries.
BatchHook = Callable[["sqlite_utils.Database", str, BatchResult], None]


class Store:
    """One logd database file."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        if not create and not self.path.exists():
            raise StoreError(
                f"no logd database at {self.path}",
                hint="run `logd sync` first, or pass --db / -c for another store",
            )
        if create:
            try:
                self._create_file()
            except OSError as exc:
                raise StoreError(
                    f"cannot create the database {self.path}: {exc.strerror}",
                    hint="set `database` in the config (or LOGD_DATABASE) to a writable path",
                ) from None
        import sqlite_utils

        try:
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            self.db = sqlite_utils.Database(conn)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if create:
                # 8 KiB pages, not 4: about 8 % fewer instructions per stored entry (fewer
                # page splits and cells to shift), measured under callgrind on a FleetIT batch.
                # Only a new file can take it; existing stores keep the size they have.
                self.db.execute("PRAGMA page_size = 8192")
                self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                self.db.enable_wal()
                migrate(self.db)
            elif not self.db["entries"].exists():
                raise StoreError(f"{self.path} is not a logd database (no entries table)")
            self.db.execute("PRAGMA synchronous = NORMAL")
            # Checkpoint every ~40 MB of WAL, not the default 4 MB: a backfill then copies
            # pages back to the database ten times less often (measured: +13 % entries/s).
            # The file is cut back to 64 MB after a checkpoint, so it does not stay large.
            # Counted in pages: 40 MiB is 10,240 of an old store's 4 KiB pages, 5,120 of 8 KiB.
            page = self.db.execute("PRAGMA page_size").fetchone()[0]
            self.db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page}")
            self.db.execute("PRAGMA journal_size_limit = 67108864")
            self.db.execute("PRAGMA cache_size = -32000")  # 32 MB: keeps index pages hot
            # SQLite before 3.32 allowed 999 placeholders per statement, later ones 32766.
            self._variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None

    def _create_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction, holding the writer lock."""
        with self.lock, self.db.atomic():
            yield self.db

    # -- writing ----------------------------------------------------------------------------

    def commit_batch(
        self,
        source: str,
        entries: Sequence[Entry],
        cursor: Any,
        *,
        hooks: Sequence[BatchHook] = (),
        prepared: Sequence[Prepared] | None = None,
    ) -> BatchResult:
        """Store entries and their cursor in one transaction; unchanged rows are left alone.

        `prepared` is `prepare(entry)` for each entry, when the caller made it ahead (in the
        fetching thread), so that the transaction does only SQL.
        """
        result = BatchResult()
        for entry in entries:
            if entry.source != source:  # lookups and inserts must agree on the source
                raise ValueError(f"entry {entry.id!r} committed under source {source!r}")
        if prepared is None:
            prepared = [prepare(e) for e in entries]
        # A record listed twice in one batch (a vendor repeating a row): the later one wins.
        batch = list({e.native_id: (e, p) for e, p in zip(entries, prepared, strict=True)}.values())
        with self.transaction() as db:
            existing = self._existing(db, source, [e.native_id for e, _ in batch])
            now = _now()
            fresh: list[tuple[Entry, Prepared]] = []
            for entry, prep in batch:
                old = existing.get(entry.native_id)
                if old is None:
                    result.new += 1
                    if entry.status == Status.FAILURE:
                        result.new_failures.append(entry)
                    fresh.append((entry, prep))
                else:
                    self._update(db, entry, prep, old, now, result)
            self._insert_many(db, fresh, now)
            if cursor is not None:
                db.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                    "updated_at = excluded.updated_at",
                    [source, json.dumps(cursor, sort_keys=True), now],
                )
            for hook in hooks:
                hook(db, source, result)
        return result

    def _existing(
        self, db: sqlite_utils.Database, source: str, native_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        # One JSON text in, one out: a row per stored entry would cost a GIL round trip each
        # (see _insert_many), and an idle poll re-reads whole windows of stored entries.
        (found,) = db.execute(
            "SELECT json_group_array(json_array(native_id, id, hash, details_hash, status, "
            "timestamp, first_seen)) FROM entries "
            "WHERE source = ? AND native_id IN (SELECT value FROM json_each(?))",
            [source, orjson.dumps(native_ids).decode()],
        ).fetchone()
        return {row[0]: tuple(row[1:]) for row in orjson.loads(found)}

    def _update(
        self,
        db: sqlite_utils.Database,
        entry: Entry,
        prep: Prepared,
        old: tuple[Any, ...],
        now: str,
        result: BatchResult,
    ) -> None:
        """Re-fetched entry: rewrite it when anything changed, record a status change."""
        key, old_hash, old_details_hash, old_status, old_ts, first_seen = old
        if entry.timestamp_observed and prep.timestamp != old_ts:
            # The provider only knows when it saw the record; the first sighting stands.
            entry.timestamp = datetime.fromisoformat(old_ts)
            prep = prepare(entry)
        same_details = prep.details is None or prep.details_hash == old_details_hash
        if old_hash == prep.hash and same_details:
            result.unchanged += 1
            return
        if prep.details is None and old_details_hash is not None:
            # No new download: keep the stored one (read only now, not for every re-fetch).
            details = db.execute("SELECT details FROM entries WHERE id = ?", [key]).fetchone()[0]
            text = searchable_text(
                [entry.raw, json.loads(details)], known=(entry.message, entry.error)
            )
            prep = replace(prep, details=details, details_hash=old_details_hash, text=text)
        values = prep.columns(entry)
        unindex_text(db, [key])  # before the row changes: FTS5 needs the indexed values
        if old_ts == prep.timestamp:
            db.execute(
                "UPDATE entries SET provider=?, timestamp=?, status=?, message=?, error=?, "
                "entity_type=?, entity_id=?, raw=?, details=?, search_text=?, hash=?, "
                "details_hash=?, updated_at=? WHERE id=?",
                [*values, now, key],
            )
            index_text(db, [key], [(entry.message, entry.error, prep.text)])
        else:  # the time moved, so the key moves with it
            db.execute("DELETE FROM entries WHERE id = ?", [key])
            key = self._insert(db, entry, values, first_seen, now)
        result.updated += 1
        if old_status != entry.status:
            db.execute(
                "INSERT INTO status_changes (entry, source, native_id, old_status, "
                "new_status, at) VALUES (?, ?, ?, ?, ?, ?)",
                [key, entry.source, entry.native_id, old_status, entry.status, now],
            )
            if entry.status == Status.FAILURE:
                result.new_failures.append(entry)

    def _insert_many(
        self, db: sqlite_utils.Database, fresh: list[tuple[Entry, Prepared]], now: str
    ) -> None:
        """Insert new entries with one key lookup and one INSERT statement for the lot."""
        if not fresh:
            return
        starts = sorted({prep.key for _, prep in fresh})
        # The highest key already taken in each candidate microsecond, in one statement that
        # answers one row: Python's sqlite3 releases and retakes the GIL for every row it
        # steps through, and while a poll fetches in another thread each retake waits for it
        # (a row per entry made this lookup the store thread's longest wait).
        (found,) = db.execute(
            "SELECT json_group_array(json_array(value, (SELECT max(id) FROM entries "
            f"WHERE id BETWEEN value AND value + {SLOTS - 1}))) FROM json_each(?)",
            [orjson.dumps(starts).decode()],
        ).fetchone()
        taken: dict[int, int | None] = {start: top for start, top in orjson.loads(found)}
        keys: list[int] = []
        texts: list[Texts] = []  # what the FTS index gets of each row in `keys`
        values: list[Any] = []  # ROW_VALUES per new row, in _insert_rows_sql's order
        crowded: list[tuple[Entry, list[Any]]] = []
        for entry, prep in fresh:
            start = prep.key
            top = taken[start]
            key = start if top is None else top + 1
            if key >= start + SLOTS:  # this microsecond is full: the slow path finds room
                crowded.append((entry, prep.columns(entry)))
                continue
            taken[start] = key
            keys.append(key)
            texts.append((entry.message, entry.error, prep.text))
            values.append(key)
            values.append(entry.native_id)
            values += prep.columns(entry)
        # Hundreds of rows per statement: SQLite inserts them in one step with the GIL
        # released, so the fetching thread runs meanwhile. executemany takes the GIL back after
        # every row, and reading the rows from one JSON text (json_each) cost SQLite 231k
        # instructions a row against 130k for binding them (callgrind, 10k FleetIT rows).
        per = max(1, min(ROWS_PER_INSERT, (self._variables - 2) // ROW_VALUES))
        source = fresh[0][0].source  # commit_batch checked: one source per batch
        for start in range(0, len(keys), per):
            n = min(per, len(keys) - start)
            chunk = values[start * ROW_VALUES : (start + n) * ROW_VALUES]
            db.execute(_insert_rows_sql(n), [source, now, *chunk])
        index_text(db, keys, texts)
        for entry, columns in crowded:
            self._insert(db, entry, columns, now, now)

    @staticmethod
    def _insert(
        db: sqlite_utils.Database, entry: Entry, values: list[Any], first_seen: str, now: str
    ) -> int:
        key = time_key(entry.timestamp)
        while True:
            top = db.execute(
                "SELECT max(id) FROM entries WHERE id BETWEEN ? AND ?", [key, key + SLOTS - 1]
            ).fetchone()[0]
            if top is None or top < key + SLOTS - 1:
                key = key if top is None else top + 1
                break
            key += SLOTS  # this microsecond is full: take the next one
        db.execute(INSERT_ENTRY, [key, entry.source, entry.native_id, *values, first_seen, now])
        index_text(db, [key])
        return key

    def start_run(self, source: str) -> int:
        """Record the start of a poll; returns its run id."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO poll_runs (source, started) VALUES (?, ?)", [source, _now()]
            )
            return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, *, requests: int | None = None, error: str | None = None
    ) -> None:
        """Record the end of a poll, with its error if it failed."""
        with self.transaction() as db:
            db.execute(
                "UPDATE poll_runs SET finished = ?, error = ?, "
                "requests = coalesce(?, requests) WHERE id = ?",
                [_now(), error, requests, run_id],
            )

    # -- reading ----------------------------------------------------------------------------

    def cursor(self, source: str) -> Any:
        """A source's stored cursor, or None."""
        with self.lock:
            row = self.db.execute(
                "SELECT cursor FROM cursors WHERE source = ?", [source]
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def known_ids(self, source: str, native_ids: list[str]) -> set[str]:
        """Which of `native_ids` are stored for `source`."""
        with self.lock:
            return set(self._existing(self.db, source, native_ids))

    def pending_ids(self, source: str) -> list[str]:
        """Native ids of `source`'s entries still pending."""
        with self.lock:
            rows = self.db.execute(
                "SELECT native_id FROM entries WHERE source = ? AND status = 'pending'", [source]
            ).fetchall()
        return [r[0] for r in rows]

    def get(self, entry_id: str) -> Row | None:
        """One entry by `source:native_id`."""
        source, sep, native_id = entry_id.partition(":")
        if not sep:
            raise QueryError(f"entry id {entry_id!r} should look like SOURCE:NATIVE_ID")
        with self.lock:
            row = self.db.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE source = ? AND native_id = ?",
                [source, native_id],
            ).fetchone()
        return Row.from_sql(row) if row else None

    def search(self, filters: Filters, *, limit: int | None = 50) -> list[Row]:
        """Entries matching `filters`, newest first (`limit` None or 0 = all)."""
        return [Row.from_sql(r) for r in self._search_rows(filters, limit)]

    def _search_rows(self, f: Filters, limit: int | None) -> list[Any]:
        sql, where, params, key_col = self._where(f)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key_col} DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return self._run_query(sql, params, f)

    def updated_since(
        self, after: str, filters: Filters, *, limit: int = 1000
    ) -> list[tuple[str, Row]]:
        """Entries stored or changed after the `updated_at` value `after`, oldest change first."""
        sql, where, params, _ = self._where(filters)
        sql = sql.replace("SELECT ", "SELECT entries.updated_at, ", 1)
        where.append("entries.updated_at > ?")
        params.append(after)
        sql += " WHERE " + " AND ".join(where) + " ORDER BY entries.updated_at LIMIT ?"
        params.append(limit)
        return [(r[0], Row.from_sql(r[1:])) for r in self._run_query(sql, params, filters)]

    def _where(self, f: Filters) -> tuple[str, list[str], list[Any], str]:
        return search_sql(f)

    def _run_query(self, sql: str, params: list[Any], f: Filters) -> list[Any]:
        try:
            with self.lock:
                return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "MATCH" in str(exc):
                raise QueryError(
                    f"full-text query {f.text!r} is not valid FTS5 syntax: {exc}",
                    hint="drop --fts to search for the plain words",
                ) from None
            raise

    def source_stats(self) -> list[dict[str, Any]]:
        """Per source: entries, failures, pending, last poll, last success, last error, cursor."""
        with self.lock:
            counts = {
                row[0]: row[1:]
                for row in self.db.execute(
                    "SELECT source, count(*), sum(status = 'failure'), sum(status = 'pending') "
                    "FROM entries GROUP BY source"
                ).fetchall()
            }
            runs = {}
            for row in self.db.execute(
                """
                SELECT source,
                       max(started),
                       max(CASE WHEN error IS NULL AND finished IS NOT NULL THEN finished END),
                       (SELECT error FROM poll_runs p2 WHERE p2.source = p.source
                          AND p2.finished IS NOT NULL ORDER BY id DESC LIMIT 1),
                       (SELECT finished FROM poll_runs p3 WHERE p3.source = p.source
                          AND p3.error IS NOT NULL ORDER BY id DESC LIMIT 1)
                FROM poll_runs p GROUP BY source
                """
            ).fetchall():
                runs[row[0]] = row[1:]
            cursors = {
                row[0]: (json.loads(row[1]) if row[1] else None, row[2])
                for row in self.db.execute("SELECT source, cursor, updated_at FROM cursors")
            }
        out = []
        for source in sorted(set(counts) | set(runs) | set(cursors)):
            n, failures, pending = counts.get(source, (0, 0, 0))
            last_poll, last_success, last_error, last_error_at = runs.get(
                source, (None, None, None, None)
            )
            out.append(
                {
                    "source": source,
                    "entries": n or 0,
                    "failures": failures or 0,
                    "pending": pending or 0,
                    "last_poll": last_poll,
                    "last_success": last_success,
                    "last_error": last_error,
                    "last_error_at": last_error_at,
                    "cursor": cursors.get(source, (None, None))[0],
                }
            )
        return out

    # -- the daemon's schedule (table `daemon_schedule`, written by `logd run`) ---------------

    def set_schedule(
        self, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when the daemon next polls `source`, its interval and failures in a row."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO daemon_schedule (source, next_run, interval, consecutive_failures, "
                "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
                "next_run = excluded.next_run, interval = excluded.interval, "
                "consecutive_failures = excluded.consecutive_failures, "
                "updated_at = excluded.updated_at",
                [
                    source,
                    next_run.astimezone(UTC).isoformat(timespec="seconds") if next_run else None,
                    interval,
                    failures,
                    _now(),
                ],
            )

    def clear_schedule(self, sources: Sequence[str] | None = None) -> None:
        """Forget the schedule of `sources` (all when None): they are no longer polled."""
        with self.transaction() as db:
            if sources is None:
                db.execute("DELETE FROM daemon_schedule")
            else:
                for source in sources:
                    db.execute("DELETE FROM daemon_schedule WHERE source = ?", [source])

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per source the daemon polls: next_run, interval, consecutive_failures (may be empty)."""
        with self.lock:
            if not self.db["daemon_schedule"].exists():  # a store no daemon has opened yet
                return {}
            rows = self.db.execute(
                "SELECT source, next_run, interval, consecutive_failures FROM daemon_schedule"
            ).fetchall()
        return {
            r[0]: {"next_run": r[1], "interval": r[2], "consecutive_failures": r[3]} for r in rows
        }

    def stats(self, *, since: datetime | None = None, by: str = "source") -> list[dict[str, Any]]:
        """Counts and failure rates grouped by source, provider, status or (UTC) day."""
        group = {
            "source": "source",
            "provider": "provider",
            "status": "status",
            "day": "substr(timestamp, 1, 10)",
        }[by]
        where, params = "", []
        if since is not None:
            where, params = "WHERE id >= ?", [time_key(since)]
        sql = (
            f"SELECT {group} AS grp, count(*), sum(status = 'failure'), sum(status = 'pending') "
            f"FROM entries {where} GROUP BY grp ORDER BY grp"
        )
        with self.lock:
            rows = self.db.execute(sql, params).fetchall()
        return [
            {
                by: grp,
                "entries": n,
                "failures": failures,
                "failure_rate": round(failures / n * 100, 2) if n else 0.0,
                "pending": pending,
            }
            for grp, n, failures, pending in rows
        ]
