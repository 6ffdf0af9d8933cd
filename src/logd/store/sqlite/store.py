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
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson

from logd.errors import QueryError, StoreError
from logd.plugin.entries import Entry, Status
from logd.store import interface
from logd.store.interface import (
    Attempt,
    BatchHook,
    BatchResult,
    Delivery,
    DeliveryState,
    Filters,
    Lease,
    LeaseLost,
    RetentionResult,
    Row,
    RunProgress,
)
from logd.store.sqlite import outbox
from logd.store.sqlite.locking import immediate
from logd.store.sqlite.migrations import migrate
from logd.store.sqlite.rows import Prepared, prepare
from logd.store.sqlite.search import (
    ENTRY_COLUMNS,
    PROBE,
    SAMPLE,
    SLOTS,
    TEXT_OUTNUMBERS,
    Texts,
    index_text,
    probe_sql,
    row_filters,
    search_sql,
    select_columns,
    status_match,
    status_tags_match,
    tag_match,
    text_match,
    time_key,
)
from logd.store.sqlite.statements import IN_LIST, chunks, row_counts
from logd.store.sqlite.transaction import SqliteBatchTransaction
from logd.store.text import searchable_text

if TYPE_CHECKING:  # imported in Store.__init__: logd.reader opens stores without it
    import sqlite_utils

__all__ = [
    "BatchHook",
    "BatchResult",
    "Filters",
    "Row",
    "Store",
    "store_error",
    "store_errors",
    "time_key",
]

#: How long a write waits for another connection's write lock before it fails (milliseconds).
#: Read at each open, so tests (and `Store(busy_timeout=…)`) can make it short.
BUSY_TIMEOUT_MS = 10_000
#: WAL size that triggers a checkpoint (SQLite's default is 1,000 pages, 4 MB at 4 KiB).
WAL_CHECKPOINT_BYTES = 40 * 2**20
INSERT_ENTRY = (
    "INSERT INTO entries (id, source, native_id, provider, timestamp, status, message, error, "
    "entity_type, entity_id, raw, details, search_text, hash, details_hash, timestamp_observed, "
    "first_seen, updated_at, change) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Stored rows among a chunk of native ids (`statements.chunks`) of one source.
EXISTING = (
    "SELECT json_group_array(json_array(native_id, id, hash, details_hash, status, timestamp, "
    f"first_seen)) FROM entries WHERE source = ? AND native_id IN {IN_LIST}"
)


# -- what a failed SQLite call means, in one line -------------------------------------------
# Every store entry point (open, `transaction`, `reading`, the reader) maps `sqlite3.Error`
# through `store_error`, so every command and the daemon say the same thing for the same fault.

#: SQLite's primary result codes (sqlite3.h) that `store_error` tells apart.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


@contextmanager
def store_errors(path: Path, busy_timeout: float) -> Iterator[None]:
    """Raise StoreError (one line: the file, what is wrong, what to do) for any sqlite3.Error."""
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(exc, path, busy_timeout) from exc


def store_error(exc: sqlite3.Error, path: Path, busy_timeout: float) -> StoreError:
    """The StoreError for a failed SQLite call on the store at `path` (one line, no hint)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    # A full disk can also surface as an I/O error (growing the -shm file, say).
    full = primary == _IOERR and _free_bytes(path) < 2**20
    if primary == _FULL or "disk is full" in text or full:
        return StoreError(
            f"{path}: the disk is full ({_sizes(path)}); the batch being written was rolled "
            f"back and everything stored before it is kept; free space on the file system "
            f"holding {path.parent} (the WAL grows to about "
            f"{WAL_CHECKPOINT_BYTES // 2**20} MB between checkpoints) and run again"
        )
    if primary in (_BUSY, _LOCKED) or "database is locked" in text or "is busy" in text:
        return StoreError(
            f"{path} is locked: another connection held its write lock for longer than the "
            f"busy timeout ({busy_timeout:g}s); {_holders(path)}; let that process finish or "
            f"stop it (two writers on one file: a second `logd run`?), then run again"
        )
    if primary in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
        what = (
            "is not an SQLite database, or its header is damaged"
            if primary == _NOTADB or "not a database" in text
            else "is damaged"
        )
        return StoreError(
            f"{path} {what} ({text}); if it is the right file, stop logd, keep a copy, and "
            f'recover what it holds: sqlite3 {path} ".recover" | sqlite3 {path}.recovered, '
            "then move the .recovered file into its place (or restore a backup)"
        )
    problem = _path_problem(path)
    if problem is not None:
        return StoreError(f"{problem} ({text})")
    if primary == _READONLY or "readonly" in text:
        return StoreError(
            f"{path} cannot be written ({text}); give the user running logd write access to "
            "the file, its -wal and -shm files and its directory (chown/chmod), then run again"
        )
    if primary == _IOERR or "I/O error" in text:
        return StoreError(
            f"{path}: the disk reported an I/O error ({text}); check the device and the file "
            "system (dmesg), then run again; if it persists, restore the file from a backup"
        )
    if primary == _CANTOPEN:
        return StoreError(
            f"cannot open {path} ({text}); check that its directory exists and is writable"
        )
    return StoreError(f"{path}: database error: {text}")


def os_store_error(exc: OSError, path: Path) -> StoreError:
    """The StoreError for an OSError while creating the store's file or directory."""
    problem = _path_problem(path)
    if problem is not None:
        return StoreError(problem)
    return StoreError(
        f"cannot create the database {path}: {exc.strerror}; set `database` in the config "
        "(or LOGD_DATABASE) to a writable path"
    )


def _path_problem(path: Path) -> str | None:
    """What stops SQLite using `path`, seen from the file system: a directory in its place,
    a read-only file, directory or file system; None when none of these."""
    try:
        if path.is_dir():
            return (
                f"{path} is a directory, not a database file; move it away or set `database` "
                "to a file path"
            )
        directory = path.parent
        if not directory.is_dir():  # missing, or a file: the OS error says which
            return None
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return (
                f"{path} is on a read-only file system; remount {directory} read-write or set "
                "`database` to a writable path"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            return (
                f"the directory {directory} is not writable (SQLite creates {path.name}-wal and "
                f"{path.name}-shm there); give the user running logd write access to it "
                "(chown/chmod)"
            )
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if file.exists() and not os.access(file, os.R_OK | os.W_OK):
                return (
                    f"{file} is read-only (mode {file.stat().st_mode & 0o777:o}, or immutable: "
                    f"see lsattr); give the user running logd read and write access to it "
                    "(chown/chmod/chattr -i)"
                )
    except OSError:
        return None
    return None


def _sizes(path: Path) -> str:
    """'database 1.2 MB, WAL 3.4 MB, 0 B free': what the file takes and what is left."""
    parts = []
    for label, file in (("database", path), ("WAL", Path(f"{path}-wal"))):
        with suppress(OSError):
            if size := file.stat().st_size:
                parts.append(f"{label} {_human(size)}")
    parts.append(f"{_human(_free_bytes(path))} free")
    return ", ".join(parts)


def _free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path`."""
    try:
        vfs = os.statvfs(path.parent)
    except OSError:
        return 2**62
    return vfs.f_bavail * vfs.f_frsize


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _holders(path: Path) -> str:
    """Who holds the write lock (from /proc/locks) and which other processes have the file
    or its -wal/-shm open (from /proc/*/fd): Linux only, and only what this user may see."""
    writers = _write_lock_pids(path)
    names = {os.path.realpath(p) for p in (path, f"{path}-wal", f"{path}-shm")}
    found: list[int] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return "the processes holding it cannot be listed here (no /proc)"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in names for fd in fds):
                found.append(pid)
        except OSError:  # gone, or another user's: skip it
            continue
    parts = []
    if writers:
        held = ", ".join(_describe_pid(pid) for pid in sorted(writers))
        parts.append(f"{held} {'holds' if len(writers) == 1 else 'hold'} the write lock")
    others = [pid for pid in found if pid not in writers and pid != os.getpid()]
    if others:
        parts.append("also open in " + ", ".join(_describe_pid(pid) for pid in others))
    return "; ".join(parts) or "no other process visible here has it open"


#: Where SQLite takes its write lock: byte 120 of the -shm file in WAL mode (WAL_WRITE_LOCK),
#: the RESERVED byte (2**30 + 1) of the database file otherwise.
_WRITE_LOCKS = (("-shm", 120), ("", 2**30 + 1))


def _write_lock_pids(path: Path) -> set[int]:
    """Pids holding SQLite's write lock on the store, read from /proc/locks (POSIX locks)."""
    wanted: dict[tuple[int, int], int] = {}
    for suffix, byte in _WRITE_LOCKS:
        try:
            st = os.stat(f"{path}{suffix}")
        except OSError:
            continue
        wanted[(st.st_dev, st.st_ino)] = byte
    pids: set[int] = set()
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return pids
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 23393 fe:00:2154978 120 120"
        if len(fields) < 8 or fields[1] != "POSIX" or fields[3] != "WRITE":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            pid, first = int(fields[4]), int(fields[6])
            last = fields[7]
            at = wanted.get((dev, int(inode)))
            if at is not None and first <= at and (last == "EOF" or at <= int(last)):
                pids.add(pid)
        except ValueError:
            continue
    return pids


def _describe_pid(pid: int) -> str:
    if pid == os.getpid():
        return f"pid {pid} (this process)"
    try:  # the program's name only: a command line may carry a token
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
    except OSError:
        name = "?"
    return f"pid {pid} ({name})"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


#: Held while a store opens its outbox's reading connection.
_OPENING = threading.Lock()

#: Seconds a delivery claim waits for the writer to record it in the file (see claim_due).
CLAIM_WRITE_WAIT = 0.2

#: Rows per multi-row INSERT (bounded again by the connection's variable limit).
ROWS_PER_INSERT = 500


@lru_cache(maxsize=64)
def _insert_rows_sql(n: int) -> str:
    """INSERT_ENTRY for `n` rows in one statement: `?1` is the source, `?2` the time now
    (shared by every row), then each row's own ROW_VALUES values in order."""
    rows = []
    for i in range(n):
        own = [f"?{3 + i * ROW_VALUES + j}" for j in range(ROW_VALUES)]
        # Column order of INSERT_ENTRY: id, source, native_id, …, details_hash,
        # timestamp_observed, first_seen, updated_at, change.
        rows.append(f"({own[0]}, ?1, {', '.join(own[1:-1])}, ?2, ?2, {own[-1]})")
    return INSERT_ENTRY.split(" VALUES ")[0] + " VALUES " + ", ".join(rows)


#: Values bound per row by `_insert_rows_sql`: id, native_id, `Prepared.columns`, change.
ROW_VALUES = 16


def unindex_text(db: sqlite_utils.Database, keys: list[int]) -> None:
    """Take these stored entries out of the FTS index; call before changing or deleting them."""
    index_text(db, keys, delete=True)


class _Changes:
    """The change sequence inside one write transaction: numbers handed out from the
    `change_counter` row, written back once at the end (one row, not one write per entry)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.start = self.last = int(
            db.execute("SELECT last FROM change_counter WHERE id = 1").fetchone()[0]
        )

    def next(self) -> int:
        """The next change number."""
        self.last += 1
        return self.last

    def save(self) -> None:
        """Write the counter back, when numbers were handed out."""
        if self.last != self.start:
            self.db.execute("UPDATE change_counter SET last = ? WHERE id = 1", [self.last])


class Store:
    """One logd database file."""

    #: The columns read into a `Row` (a reader of a store not yet migrated reads fewer).
    entry_columns = ENTRY_COLUMNS
    #: The FTS index has a column group per status and tag words (m015; a reader of a store
    #: not yet migrated checks filters in SQL).
    grouped_fts = True
    #: Matches of text and status a search reads before it checks the other filters in SQL.
    probe_limit = PROBE

    def __init__(
        self, path: str | Path, *, create: bool = True, busy_timeout: float | None = None
    ) -> None:
        """Open (and with `create`, make and migrate) the store at `path`.

        `busy_timeout` is how many seconds a write waits for another writer (default
        BUSY_TIMEOUT_MS). Raises StoreError, one line saying what to do, for any failure.
        """
        self.path = Path(path)
        self.location = str(self.path)
        self.lock = threading.RLock()
        self.busy_timeout = BUSY_TIMEOUT_MS / 1000 if busy_timeout is None else busy_timeout
        if not create and not self.path.exists():
            raise StoreError(
                f"no logd database at {self.path}",
                hint="run `logd sync` first, or pass --db / -c for another store",
            )
        if create:
            try:
                self._create_file()
            except OSError as exc:
                raise os_store_error(exc, self.path) from exc
        import sqlite_utils

        with store_errors(self.path, self.busy_timeout):
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, check_same_thread=False
            )
            self.db = sqlite_utils.Database(conn)
            self._readonly = False
            self._outbox_reader: Store | None = None
            self._claims: dict[str, tuple[str, str, datetime]] = {}
            self._claims_lock = threading.Lock()
            self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
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
            else:  # an existing store opened to write: it gets the schema the writes expect
                migrate(self.db)
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

    def _create_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        """Close the connection (and the outbox's reading one)."""
        reader, self._outbox_reader = self._outbox_reader, None
        if reader is not None and reader is not self:
            reader.close()
        with self.reading():
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction, holding the writer lock; SQLite errors become StoreError.

        Anything that fails inside (commit included) rolls the whole transaction back.
        """
        with self.lock, store_errors(self.path, self.busy_timeout), immediate(self.db):
            yield self.db

    @contextmanager
    def reading(self) -> Iterator[sqlite_utils.Database]:
        """The connection for reads, holding the writer lock; SQLite errors become StoreError."""
        with self.lock, store_errors(self.path, self.busy_timeout):
            yield self.db

    # -- writing ----------------------------------------------------------------------------

    def commit_batch(
        self,
        source: str,
        entries: Sequence[Entry],
        cursor: Any,
        *,
        provider: str,
        hooks: Sequence[BatchHook] = (),
        prepared: Sequence[object] | None = None,
        backfill: bool = False,
        run: RunProgress | None = None,
        lease: Lease | None = None,
    ) -> BatchResult:
        """Store entries of `source` (polled through `provider`), their cursor, the run's
        counters and what `hooks` do in one transaction; unchanged rows are left alone, each
        change gets the next change number.

        `prepared` is `prepare(entry, provider)` for each entry, when the caller made it ahead
        (in the fetching thread), so that the transaction does only SQL. `backfill` is handed to the
        hooks in `BatchResult.backfill`. With `lease`, nothing is written unless the lease is
        still current (`LeaseLost`, a StoreError).
        """
        result = BatchResult(backfill=backfill)
        if prepared is None:
            prepared = [prepare(e, provider) for e in entries]
        for prep in prepared:
            if not isinstance(prep, Prepared):
                raise TypeError(f"prepared values come from Store.prepare, not {type(prep)}")
            if prep.provider != provider:  # the row and its hash name the provider
                raise ValueError(f"entries prepared for {prep.provider!r}, not {provider!r}")
        checked = cast("list[Prepared]", prepared)
        # A record listed twice in one batch (a vendor repeating a row): the later one wins,
        # unless it is a quarantined copy of a readable one.
        rows: dict[str, tuple[Entry, Prepared]] = {}
        for entry, prep in zip(entries, checked, strict=True):
            if entry.status is Status.INVALID and entry.native_id in rows:
                continue
            rows[entry.native_id] = (entry, prep)
        batch = list(rows.values())
        with self.transaction() as db:
            if lease is not None:
                self._check_lease(db, lease)
            changes = _Changes(db)
            existing = self._existing(db, source, list(rows))
            now = _now()
            fresh: list[tuple[Entry, Prepared]] = []
            for entry, prep in batch:
                old = existing.get(entry.native_id)
                if old is None:
                    if entry.status is Status.INVALID:
                        result.invalid.append(entry)
                    else:
                        result.new += 1
                        if entry.status == Status.FAILURE:
                            result.new_failures.append(entry)
                    fresh.append((entry, prep))
                elif entry.status is Status.INVALID and old[3] != Status.INVALID:
                    # A stored readable entry is never replaced by an unreadable copy of it.
                    result.unchanged += 1
                else:
                    self._update(db, source, entry, prep, old, now, result, changes)
            self._insert_many(db, source, fresh, now, changes)
            changes.save()
            if cursor is not None:
                db.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                    "updated_at = excluded.updated_at",
                    [source, json.dumps(cursor, sort_keys=True), now],
                )
            if run is not None:  # poll-run counters commit with the batch they count
                db.execute(
                    "UPDATE poll_runs SET pages = pages + ?, new = new + ?, "
                    "updated = updated + ?, failures = failures + ? WHERE id = ?",
                    [run.pages, result.new, result.updated, len(result.new_failures), run.run_id],
                )
            if hooks:
                tx = SqliteBatchTransaction(
                    db, source, provider, self.entry_columns, self._store_error
                )
                for hook in hooks:
                    hook(tx, result)
        return result

    def prepare(self, entry: Entry, provider: str) -> Prepared:
        """Serialize `entry` of a source of `provider` outside the transaction: hand the
        results to `commit_batch(prepared=)` (the fetching thread does this work)."""
        return prepare(entry, provider)

    def _store_error(self, exc: sqlite3.Error) -> StoreError:
        return store_error(exc, self.path, self.busy_timeout)

    def _existing(
        self, db: sqlite_utils.Database, source: str, native_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """Stored rows among `native_ids` of `source`, by native id: (key, hash, details_hash,
        status, timestamp, first_seen).

        The ids are bound as parameters, so any string compares exactly: sent in a JSON text
        through `json_each`, an id holding NUL would end there (SQLite's JSON functions stop
        at it) and miss its row. One JSON text out: a row per stored entry would cost a GIL
        round trip each (see _insert_many), and an idle poll re-reads whole windows.
        """
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in chunks(native_ids):  # one statement whatever the batch's size
            (rows,) = db.execute(EXISTING, [source, *chunk]).fetchone()
            found.update((row[0], tuple(row[1:])) for row in orjson.loads(rows))
        return found

    def _update(
        self,
        db: sqlite_utils.Database,
        source: str,
        entry: Entry,
        prep: Prepared,
        old: tuple[Any, ...],
        now: str,
        result: BatchResult,
        changes: _Changes,
    ) -> None:
        """Re-fetched entry: rewrite it when anything changed, record a status change."""
        key, old_hash, old_details_hash, old_status, old_ts, first_seen = old
        if entry.timestamp_observed and prep.timestamp != old_ts:
            # The provider only knows when it saw the record; the first sighting stands.
            entry.timestamp = datetime.fromisoformat(old_ts)
            prep = prepare(entry, prep.provider)
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
                "details_hash=?, timestamp_observed=?, updated_at=?, change=? WHERE id=?",
                [*values, now, changes.next(), key],
            )
            index_text(db, [key], [(entry.message, entry.error, prep.text)])
        else:  # the time moved, so the key moves with it
            db.execute("DELETE FROM entries WHERE id = ?", [key])
            key = self._insert(db, source, entry, values, first_seen, now, changes.next())
        result.updated += 1
        if old_status != entry.status:
            db.execute(
                "INSERT INTO status_changes (entry, source, native_id, old_status, "
                "new_status, at) VALUES (?, ?, ?, ?, ?, ?)",
                [key, source, entry.native_id, old_status, entry.status, now],
            )
            if entry.status == Status.FAILURE:
                result.new_failures.append(entry)

    def _insert_many(
        self,
        db: sqlite_utils.Database,
        source: str,
        fresh: list[tuple[Entry, Prepared]],
        now: str,
        changes: _Changes,
    ) -> None:
        """Insert new entries of `source` with one key lookup and one INSERT statement."""
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
        crowded: list[tuple[Entry, Prepared]] = []
        for entry, prep in fresh:
            start = prep.key
            top = taken[start]
            key = start if top is None else top + 1
            if key >= start + SLOTS:  # this microsecond is full: the next ones take the rest
                crowded.append((entry, prep))
                continue
            taken[start] = key
            keys.append(key)
            texts.append((entry.message, entry.error, prep.text))
            values.append(key)
            values.append(entry.native_id)
            values += prep.columns(entry)
            values.append(changes.next())
        self._insert_rows(db, source, now, keys, texts, values)
        if crowded:
            self._insert_crowded(db, source, now, crowded, changes)

    def _insert_rows(
        self,
        db: sqlite_utils.Database,
        source: str,
        now: str,
        keys: list[int],
        texts: list[Texts],
        values: list[Any],
    ) -> None:
        """Insert rows whose keys are chosen (`values`: ROW_VALUES each) and index their text."""
        # Hundreds of rows per statement: SQLite inserts them in one step with the GIL
        # released, so the fetching thread runs meanwhile. executemany takes the GIL back after
        # every row, and reading the rows from one JSON text (json_each) cost SQLite 231k
        # instructions a row against 130k for binding them (callgrind, 10k FleetIT rows).
        # A few statement sizes (`row_counts`), not one per batch length: each prepared
        # statement the connection caches keeps a copy of the values last bound to it.
        per = max(1, min(ROWS_PER_INSERT, (self._variables - 2) // ROW_VALUES))
        start = 0
        for n in row_counts(len(keys), per):
            chunk = values[start * ROW_VALUES : (start + n) * ROW_VALUES]
            db.execute(_insert_rows_sql(n), [source, now, *chunk])
            start += n
        index_text(db, keys, texts)

    def _insert_crowded(
        self,
        db: sqlite_utils.Database,
        source: str,
        now: str,
        crowded: list[tuple[Entry, Prepared]],
        changes: _Changes,
    ) -> None:
        """Insert entries whose own microsecond is full: each takes the next free key after it.

        Entries sharing an instant continue from where the previous one ended, and each
        microsecond is probed once: linear in the entries, where a scan from each entry's own
        microsecond was quadratic (200k records sharing one instant took 10 times as long as
        200k distinct times). Keys stay ordered by time, and by batch order within an instant.
        """
        tops: dict[int, int | None] = {}  # microsecond → highest key taken (stored or given)
        resume: dict[int, int] = {}  # an instant's start key → where its next entry looks
        keys: list[int] = []
        texts: list[Texts] = []
        values: list[Any] = []
        for entry, prep in crowded:
            start = prep.key
            key = resume.get(start, start + SLOTS)  # its own microsecond is known full
            while True:
                micro = key - key % SLOTS
                if micro not in tops:
                    tops[micro] = db.execute(
                        "SELECT max(id) FROM entries WHERE id BETWEEN ? AND ?",
                        [micro, micro + SLOTS - 1],
                    ).fetchone()[0]
                top = tops[micro]
                if top is not None and top >= key:
                    key = top + 1
                if key < micro + SLOTS:
                    break
                key = micro + SLOTS  # full: the next microsecond
            tops[micro] = key
            resume[start] = key + 1
            keys.append(key)
            texts.append((entry.message, entry.error, prep.text))
            values.append(key)
            values.append(entry.native_id)
            values += prep.columns(entry)
            values.append(changes.next())
        self._insert_rows(db, source, now, keys, texts, values)

    @staticmethod
    def _insert(
        db: sqlite_utils.Database,
        source: str,
        entry: Entry,
        values: list[Any],
        first_seen: str,
        now: str,
        change: int,
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
        db.execute(INSERT_ENTRY, [key, source, entry.native_id, *values, first_seen, now, change])
        index_text(db, [key])
        return key

    def start_run(self, source: str) -> int:
        """Record the start of a poll; returns its run id."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO poll_runs (source, started, pid) VALUES (?, ?, ?)",
                [source, _now(), os.getpid()],
            )
            return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, *, requests: int | None = None, error: str | None = None
    ) -> None:
        """Record the end of a poll, with its error if it failed."""
        with self.transaction() as db:
            db.execute(
                "UPDATE poll_runs SET finished = ?, error = ?, "
                "requests = coalesce(?, requests), waiting = NULL, waiting_until = NULL "
                "WHERE id = ?",
                [_now(), error, requests, run_id],
            )

    def note_waiting(
        self, run_id: int, waiting: str, until: datetime, *, timeout: float = 0.5
    ) -> bool:
        """Record that running poll `run_id` waits on `waiting` until `until`; False if busy.

        For `status` only, so it never holds up the poll: when another thread or process
        holds the store for more than `timeout` seconds the note is skipped, not waited for.
        """
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            with immediate(self.db):
                self.db.execute(
                    "UPDATE poll_runs SET waiting = ?, waiting_until = ? "
                    "WHERE id = ? AND finished IS NULL",
                    [waiting, until.astimezone(UTC).isoformat(timespec="seconds"), run_id],
                )
            return True
        except sqlite3.Error:
            return False
        finally:
            with suppress(sqlite3.Error):
                self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self.lock.release()

    # -- reading ----------------------------------------------------------------------------

    def cursor(self, source: str) -> Any:
        """A source's stored cursor, or None."""
        with self.reading():
            row = self.db.execute(
                "SELECT cursor FROM cursors WHERE source = ?", [source]
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def known_ids(self, source: str, native_ids: Sequence[str]) -> set[str]:
        """Which of `native_ids` are stored for `source` (quarantined records do not count).

        A provider that skips known records then hands over a good fetch of a record stored
        as `invalid`, which replaces it.
        """
        with self.reading() as db:
            found = self._existing(db, source, list(native_ids))
        return {nid for nid, row in found.items() if row[3] != Status.INVALID}

    def get(self, entry_id: str) -> Row | None:
        """One entry by `source:native_id`."""
        source, sep, native_id = entry_id.partition(":")
        if not sep:
            raise QueryError(f"entry id {entry_id!r} should look like SOURCE:NATIVE_ID")
        with self.reading():
            row = self.db.execute(
                f"SELECT {self.entry_columns} FROM entries WHERE source = ? AND native_id = ?",
                [source, native_id],
            ).fetchone()
        return Row.from_sql(row) if row else None

    def ids_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Up to `limit` entry ids (`source:native_id`) that start with `prefix`, in order.

        A range on the `(source, native_id)` unique index, so it reads only the ids it
        returns: `fleet:12` ranges over fleet's native ids from `12` up to `13`, and a prefix
        without `:` over source names.
        """
        source, sep, native = prefix.partition(":")
        column, start, params = ("native_id", native, [source]) if sep else ("source", source, [])
        where = [*(["source = ?"] if sep else []), f"{column} >= ?"]
        params.append(start)
        if start:  # the first string after every string starting with `start`
            where.append(f"{column} < ?")
            after = ord(start[-1]) + 1
            after = 0xE000 if 0xD800 <= after < 0xE000 else min(after, 0x10FFFF)  # no surrogates
            params.append(start[:-1] + chr(after))
        sql = (
            f"SELECT source || ':' || native_id FROM entries WHERE {' AND '.join(where)} "
            "ORDER BY source, native_id LIMIT ?"
        )
        with self.lock:
            rows = self.db.execute(sql, [*params, limit]).fetchall()
        return [r[0] for r in rows]

    def search(self, filters: Filters, *, limit: int | None = 50) -> list[Row]:
        """Entries matching `filters`, newest first (`limit` None or 0 = all)."""
        return [Row.from_sql(r) for r in self._search_rows(filters, limit)]

    def _search_rows(self, f: Filters, limit: int | None) -> list[Any]:
        dense = self.grouped_fts and self._text_outnumbers_statuses(f)
        sql, where, params, key_col = search_sql(
            f, self.entry_columns, grouped=self.grouped_fts, status_tags=dense
        )
        many = False  # the MATCH is known to have more than `limit` rows
        if limit and key_col == "entries_fts.rowid" and self.grouped_fts and not dense:
            found = self._probed(f, limit)
            if found is not None:
                return found
            many = self.probe_limit >= limit and tag_match(f) is None
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit and key_col == "entries_fts.rowid" and not many:
            # FTS5 walks a doclist newest first by re-reading its pages, oldest first by
            # skipping them: a phrase with a word every entry has ("ORD-123") took 115 ms
            # newest first and 0.3 ms oldest first on 5M entries, and a match that ends empty
            # walks its doclists through either way, oldest first 1.4-5 x faster. So ask
            # oldest first for one more than the limit: fewer means that is every match.
            oldest = self._run_query(f"{sql} ORDER BY {key_col} LIMIT ?", [*params, limit + 1])
            if len(oldest) <= limit:
                return oldest[::-1]
        sql += f" ORDER BY {key_col} DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return self._run_query(sql, params)

    def _text_outnumbers_statuses(self, f: Filters) -> bool:
        """Whether `f`'s text has many times the entries of its statuses (those with columns of
        their own) in its window, judged by how far the first `SAMPLE` matches of each reach.

        Then an AND with the statuses' tag words costs a step per entry of theirs and the
        column filter a step per entry of the text: `sync --failed` on 1M entries, sync in
        most successes and no failure, took 55 ms by the tag and 105 ms by the columns, and
        `timeout --status pending` (2 % and 3 % of entries) 3.0 ms against 1.3 ms.
        """
        tags = status_tags_match(f)
        text = text_match(f)
        if tags is None or text is None:
            return False
        text_n, text_end = self._reach(f, text)
        tags_n, tags_end = self._reach(f, tags)
        if text_n < SAMPLE or tags_n < SAMPLE:  # one of them is all there is: it is the few
            return tags_n < SAMPLE <= text_n
        start = self._window_start(f)
        return tags_end - start > TEXT_OUTNUMBERS * (text_end - start)

    def _reach(self, f: Filters, match: str) -> tuple[int, int]:
        """How many of the first `SAMPLE` matches of `match` in `f`'s window there are, and
        the key of the last."""
        sql, params = probe_sql(f, match, SAMPLE)
        n, last = self._run_query(f"SELECT count(*), max(rowid) FROM ({sql})", params)[0]
        return int(n), int(last or 0)

    def _window_start(self, f: Filters) -> int:
        """The first key `f`'s window can hold: `--since`, else the oldest entry's."""
        if f.since is not None:
            return time_key(f.since)
        return int(self._run_query("SELECT min(id) FROM entries", [])[0][0] or 0)

    def _probed(self, f: Filters, limit: int) -> list[Any] | None:
        """The search's rows when text and status match at most `probe_limit` entries, else None.

        The text limited to the statuses' columns is the cheapest walk FTS5 has (no second
        doclist): `timeout --status success` on 1M entries, 20k of them failures that say
        timeout, ends empty after 1.3 ms. Joining the source and provider tag words instead
        made FTS5 step both doclists in turn, 20-38 ms. The few rows found are checked in SQL.
        Tag words no entry in the window has (a source with a provider it never had) answer
        first: nothing. With many matches, the newest 5 x `probe_limit` are checked the same way.
        """
        match = status_match(f)
        if match is None:
            return None
        tags = tag_match(f)
        if tags is not None and not self._run_query(*probe_sql(f, tags, 1)):
            return []
        keys = [row[0] for row in self._run_query(*probe_sql(f, match, self.probe_limit + 1))]
        if not keys:
            return []
        if len(keys) <= self.probe_limit:  # every match: check the rest on these
            return self._checked(f, keys, limit)
        if tags is None:  # the statuses' columns alone find the newest fast
            return None
        # Many matches: when `limit` of the newest ones pass the sources and providers too,
        # they are the answer (for `--source a --source b` on 5M entries, 1 ms, where the tag
        # words' plan stepped through their doclists, 5-8 ms). FTS5 hands over 1,000 in
        # 0.1 ms and SQL reads only as many as it takes to find `limit` that pass.
        newest = self._run_query(*probe_sql(f, match, 5 * self.probe_limit, newest=True))
        found = self._checked(f, [row[0] for row in newest], limit)
        return found if len(found) >= limit else None

    def _checked(self, f: Filters, keys: list[int], limit: int) -> list[Any]:
        """The newest `limit` rows among `keys` that pass `f`'s other filters, in SQL."""
        where, params = row_filters(f)
        # Newest first, each looked up by its key, until `limit` pass: with IN and ORDER BY,
        # SQLite read every key's row through the source index and sorted them all.
        sql = (
            f"SELECT {select_columns(self.entry_columns)} FROM json_each(?) AS probe "
            "CROSS JOIN entries ON entries.id = probe.value"
            + "".join(f" {'WHERE' if i == 0 else 'AND'} {w}" for i, w in enumerate(where))
            + " LIMIT ?"
        )
        newest = sorted(keys, reverse=True)
        rows = self._run_query(sql, [orjson.dumps(newest).decode(), *params, limit])
        return sorted(rows, key=lambda row: int(row[0]), reverse=True)

    def changes_after(
        self, seq: int, *, filters: Filters | None = None, limit: int = 1000
    ) -> list[tuple[int, Row]]:
        """Entries stored or changed after change number `seq`, oldest change first, with
        their change numbers: a range on the `entries_change` index, never a scan and sort."""
        sql, where, params, _ = self._where(filters or Filters())
        # The index drives, whatever else the filters have: a follower asks every second
        # for the few changes since the last, and the range holds exactly those.
        sql = sql.replace("SELECT ", "SELECT entries.change, ", 1)
        fts_join = "FROM entries_fts JOIN entries ON entries.id = entries_fts.rowid"
        if fts_join in sql:  # a text search: entries outer, FTS5 looked up by rowid
            sql = sql.replace(
                fts_join,
                "FROM entries INDEXED BY entries_change CROSS JOIN entries_fts "
                "ON entries_fts.rowid = entries.id",
            )
        else:
            sql = sql.replace("FROM entries", "FROM entries INDEXED BY entries_change", 1)
        where.append("entries.change > ?")
        params.append(seq)
        sql += " WHERE " + " AND ".join(where) + " ORDER BY entries.change LIMIT ?"
        params.append(limit)
        self._require_changes()
        return [(r[0], Row.from_sql(r[1:])) for r in self._run_query(sql, params)]

    def last_change(self) -> int:
        """The latest change number (0 for an empty store)."""
        self._require_changes()
        with self.reading() as db:
            row = db.execute("SELECT last FROM change_counter WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def _require_changes(self) -> None:
        """A StoreError for a store not yet migrated to the change sequence (a reader)."""
        with self.reading() as db:
            if not db["change_counter"].exists():
                raise StoreError(
                    f"{self.path} predates the change sequence `query --follow` reads; "
                    "run `logd sync` (or `logd run`) once to upgrade it, then follow again"
                )

    def _where(self, f: Filters) -> tuple[str, list[str], list[Any], str]:
        return search_sql(f, self.entry_columns, grouped=self.grouped_fts)

    def _run_query(self, sql: str, params: list[Any]) -> list[Any]:
        try:
            with self.lock:
                return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise store_error(exc, self.path, self.busy_timeout) from exc

    def source_stats(self) -> list[dict[str, Any]]:
        """Per source: entries, failures, pending, invalid, last poll, last success, last error,
        cursor."""
        with self.reading():
            counts = {
                row[0]: row[1:]
                for row in self.db.execute(
                    "SELECT source, count(*), sum(status = 'failure'), sum(status = 'pending'), "
                    "sum(status = 'invalid') FROM entries GROUP BY source"
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
            n, failures, pending, invalid = counts.get(source, (0, 0, 0, 0))
            last_poll, last_success, last_error, last_error_at = runs.get(
                source, (None, None, None, None)
            )
            out.append(
                {
                    "source": source,
                    "entries": n or 0,
                    "failures": failures or 0,
                    "pending": pending or 0,
                    #: Records quarantined as unreadable (`logd query --status invalid`).
                    "invalid": invalid or 0,
                    "last_poll": last_poll,
                    "last_success": last_success,
                    "last_error": last_error,
                    "last_error_at": last_error_at,
                    "cursor": cursors.get(source, (None, None))[0],
                }
            )
        return out

    def unfinished_runs(self) -> dict[str, tuple[str, int | None]]:
        """Per source whose latest poll run has no end: (started, pid of its process)."""
        with self.reading():
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(poll_runs)")}
            pid = "pid" if "pid" in columns else "NULL"  # a store not migrated yet (m008)
            rows = self.db.execute(
                f"SELECT source, started, {pid} FROM poll_runs WHERE id IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source) AND finished IS NULL"
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def run_waits(self) -> dict[str, tuple[str, str]]:
        """Per source whose running poll noted a wait: (what it waits on, until, UTC ISO)."""
        with self.reading():
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(poll_runs)")}
            if "waiting_until" not in columns:  # a store not migrated yet (m009)
                return {}
            rows = self.db.execute(
                "SELECT source, waiting, waiting_until FROM poll_runs WHERE id IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source) AND finished IS NULL "
                "AND waiting_until IS NOT NULL"
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    # -- the daemons' schedule (table `daemon_schedule`, written by `logd run`) -------------

    def set_schedule(
        self, daemon: str, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when daemon `daemon` next polls `source`, its interval, failures in a row."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO daemon_schedule (daemon, source, next_run, interval, "
                "consecutive_failures, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (daemon, source) DO UPDATE SET "
                "next_run = excluded.next_run, interval = excluded.interval, "
                "consecutive_failures = excluded.consecutive_failures, "
                "updated_at = excluded.updated_at",
                [
                    daemon,
                    source,
                    next_run.astimezone(UTC).isoformat(timespec="seconds") if next_run else None,
                    interval,
                    failures,
                    _now(),
                ],
            )

    def clear_schedule(self, daemon: str, sources: Sequence[str] | None = None) -> None:
        """Forget daemon `daemon`'s schedule of `sources` (all of its rows when None); other
        daemons' rows stay. Rows from before daemons had ids (daemon '') go with any clear-all:
        every start cleared every row then."""
        with self.transaction() as db:
            if sources is None:
                db.execute("DELETE FROM daemon_schedule WHERE daemon IN (?, '')", [daemon])
            else:
                for source in sources:
                    db.execute(
                        "DELETE FROM daemon_schedule WHERE daemon = ? AND source = ?",
                        [daemon, source],
                    )

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per scheduled source: the daemon that polls it soonest, its next_run, interval and
        consecutive_failures (empty when no daemon runs)."""
        with self.reading() as db:
            if not db["daemon_schedule"].exists():  # a store no daemon has opened yet
                return {}
            columns = {row[1] for row in db.execute("PRAGMA table_info(daemon_schedule)")}
            daemon = "daemon" if "daemon" in columns else "''"  # not migrated yet (m012)
            rows = db.execute(
                f"SELECT source, {daemon}, next_run, interval, consecutive_failures "
                "FROM daemon_schedule ORDER BY source, next_run IS NULL, next_run DESC"
            ).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for source, owner, next_run, interval, failures in rows:  # the soonest row wins
            out[source] = {
                "daemon": owner,
                "next_run": next_run,
                "interval": interval,
                "consecutive_failures": failures,
            }
        return out

    # -- leases (table `leases`): one holder at a time, fenced by a growing token ------------

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew lease `name` for `holder` for `ttl` seconds; None while another
        holder's lease has not expired. A new holder gets a larger fencing token."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=ttl)
        with self.transaction() as db:
            row = db.execute(
                "SELECT holder, token, expires_at FROM leases WHERE name = ?", [name]
            ).fetchone()
            if row is None:
                token = 1
            elif row[0] == holder:
                token = int(row[1])
            elif row[2] > outbox.iso(now):
                return None
            else:
                token = int(row[1]) + 1
            db.execute(
                "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "token = excluded.token, expires_at = excluded.expires_at",
                [name, holder, token, outbox.iso(expires)],
            )
        return Lease(name, holder, token, expires)

    def release_lease(self, lease: Lease) -> None:
        """Give a lease up early: it expires now, so the next holder need not wait (its
        token still grows). A lease that passed to another holder is left alone."""
        with self.transaction() as db:
            db.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
                [_now(), lease.name, lease.holder, lease.token],
            )

    def leases(self) -> list[Lease]:
        """Every lease, expired ones included (for `status`)."""
        with self.reading() as db:
            if not db["leases"].exists():  # a store read without migrating
                return []
            rows = db.execute(
                "SELECT name, holder, token, expires_at FROM leases ORDER BY name"
            ).fetchall()
        return [Lease(r[0], r[1], int(r[2]), datetime.fromisoformat(r[3])) for r in rows]

    def _check_lease(self, db: sqlite_utils.Database, lease: Lease) -> None:
        """LeaseLost unless `lease` is still held, unexpired, under the same token."""
        row = db.execute(
            "SELECT holder, token, expires_at FROM leases WHERE name = ?", [lease.name]
        ).fetchone()
        if row is None or row[0] != lease.holder or int(row[1]) != lease.token:
            raise LeaseLost(
                f"lease {lease.name} passed from {lease.holder} to another holder; "
                "this write was refused and nothing of it was stored (the new holder goes on)"
            )
        if row[2] <= _now():
            raise LeaseLost(
                f"lease {lease.name} of {lease.holder} expired at {row[2]} before this write; "
                "nothing of it was stored (the next poll takes the lease again)"
            )

    # -- the outbox: deliveries to sinks (`outbox`) ------------------------------------------

    def claim_due(
        self,
        sink: str,
        holder: str,
        ttl: float,
        now: datetime,
        *,
        ids: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Delivery]:
        """Pending deliveries to `sink` due at `now`, oldest first, claimed by `holder` for
        `ttl` seconds: no other holder gets them (or the rows behind them) until then.

        Never waits for a batch being committed (a backfill's large one would hold every
        sender up): due rows are read on the outbox's own connection, and the claim is kept
        in this process, where it is exact between holders, and written to the file when the
        writer is free within CLAIM_WRITE_WAIT, so that another process (a `logd webhooks
        retry` beside the daemon) skips the rows too; one writing meanwhile may not see it.
        """
        if self._readonly:
            raise StoreError(f"{self.path} was opened read-only")
        until = now + timedelta(seconds=ttl)
        with self._claims_lock:
            live = {
                d: c for d, c in self._claims.items() if c[2] > now
            }  # (holder, sink, until) by delivery id; expired claims drop out
            self._claims = live
            others = {d for d, (h, _, _) in live.items() if h != holder}
            if not ids and any(live[d][1] == sink for d in others):
                return []  # one lane, one sender: the rows behind a claimed one wait too
            with self._outbox_reading() as db:
                rows = outbox.due_rows(db, sink, holder, now, ids=ids, limit=limit + len(others))
            rows = [r for r in rows if r.delivery_id not in others][:limit]
            for row in rows:
                live[row.delivery_id] = (holder, sink, until)
        if rows:
            claimed = [r.delivery_id for r in rows]
            self._try_write(lambda db: outbox.mark_claimed(db, claimed, holder, until))
        return rows

    def _try_write(self, write: Callable[[sqlite_utils.Database], None]) -> bool:
        """Run `write` in a transaction if the store's writer is free within
        CLAIM_WRITE_WAIT seconds; False (nothing written) if it is not, or SQLite fails."""
        if not self.lock.acquire(timeout=CLAIM_WRITE_WAIT):
            return False
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(CLAIM_WRITE_WAIT * 1000)}")
            with immediate(self.db):
                write(self.db)
            return True
        except sqlite3.Error:
            return False
        finally:
            with suppress(sqlite3.Error):
                self.db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self.lock.release()

    def record_attempts(
        self,
        attempts: Sequence[Attempt],
        *,
        hold: Sequence[str] = (),
        until: datetime | None = None,
    ) -> None:
        """Record attempts (which end their claims), and hold pending deliveries `hold` until
        `until` (no attempt counted): one transaction."""
        if not attempts and not (hold and until):
            return
        with self.transaction() as db:
            outbox.record_attempts(db, attempts, hold=hold, until=until)
        with self._claims_lock:
            for delivery_id in [*(a.delivery_id for a in attempts), *(hold if until else ())]:
                self._claims.pop(delivery_id, None)

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        """The sinks with a pending delivery due (among `ids` when given); no bodies read."""
        with self._outbox_reading() as db:
            return outbox.due_sinks(db, now, ids=ids)

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        """When the next delivery to one of `sinks` is due, or None when none is pending."""
        with self._outbox_reading() as db:
            return outbox.next_due_at(db, sinks)

    def list_deliveries(
        self,
        *,
        state: DeliveryState | None = None,
        ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Delivery]:
        """Outbox rows, newest first, optionally one state or the given delivery ids."""
        with self._outbox_reading() as db:
            return outbox.list_deliveries(db, state=state, ids=ids, limit=limit)

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        """Per source or sink: pending, dead and done delivery counts."""
        with self._outbox_reading() as db:
            return outbox.counts(db, by)

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        """Make deliveries due now: the named ones (dead included), else every pending one.
        Returns the ids made due; unknown or done ids are left out."""
        with self.transaction() as db:
            return outbox.make_due(db, ids, now)

    def sink_position(self, sink: str) -> int:
        """How far a sink that follows the change sequence got (0 before its first send)."""
        with self.reading() as db:
            return outbox.sink_position(db, sink)

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        """Record that `sink` has everything up to change `seq` (never moves back); fenced
        by `lease` when given (`LeaseLost`, nothing written)."""
        with self.transaction() as db:
            if lease is not None:
                self._check_lease(db, lease)
            outbox.set_sink_position(db, sink, seq, datetime.now(UTC))

    @contextmanager
    def _outbox_reading(self) -> Iterator[sqlite_utils.Database]:
        """A connection to read the outbox on. Its own, not the writers': a poll committing
        a large batch holds the writer lock, and senders and `status` need not wait for it."""
        if self._outbox_reader is None:
            with _OPENING:  # not `self.lock`: a long commit may hold that
                if self._outbox_reader is None:
                    from logd.store.sqlite.reader import Reader

                    self._outbox_reader = self if self._readonly else Reader(self.path)
        if self._outbox_reader is self:
            with self.reading() as db:
                yield db
            return
        with self._outbox_reader.reading() as db:
            yield db

    # -- retention ---------------------------------------------------------------------------

    def apply_retention(
        self,
        older_than: float,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> RetentionResult:
        """Delete entries, poll runs, status changes and delivered alerts older than
        `older_than` seconds, in short transactions, and give the space back."""
        from logd.store.sqlite import retention

        return retention.apply_retention(self, older_than, now=now, stop=stop)

    def stats(self, *, since: datetime | None = None, by: str = "source") -> list[dict[str, Any]]:
        """Counts and failure rates grouped by source, provider or status (`by`); days and
        hours are `logd.stats.bucket_stats`."""
        group = {"source": "source", "provider": "provider", "status": "status"}[by]
        where, params = "", []
        if since is not None:
            where, params = "WHERE id >= ?", [time_key(since)]
        sql = (
            f"SELECT {group} AS grp, count(*), sum(status = 'failure'), sum(status = 'pending') "
            f"FROM entries {where} GROUP BY grp ORDER BY grp"
        )
        with self.reading():
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

    def bucket_stats(
        self, *, since: datetime, by: Literal["day", "hour"], local: bool = False
    ) -> list[dict[str, Any]]:
        """Per source and day or hour (`by`, UTC or with `local` the local zone's) from
        `since` on: entries, failures, failure_rate, pending; empty buckets left out."""
        sql = (
            f"SELECT source, {_BUCKET_SQL[by, local]} AS bucket, count(*), "
            "sum(status = 'failure'), sum(status = 'pending') FROM entries WHERE id >= ? "
            "GROUP BY source, bucket ORDER BY source, bucket"
        )
        with self.reading() as db:
            rows = db.execute(sql, [time_key(since)]).fetchall()
        return [
            {
                "source": source,
                by: bucket,
                "entries": n,
                "failures": failures,
                "failure_rate": round(failures / n * 100, 2) if n else 0.0,
                "pending": pending,
            }
            for source, bucket, n, failures, pending in rows
        ]

    def names(self, kind: Literal["source", "provider"], *, only: str | None = None) -> list[str]:
        """Every source (with entries, poll runs or a cursor) or provider stored, sorted; with
        `only`, just whether that one is (`[only]` or `[]`), one index seek each."""
        with self.reading() as db:
            if only is not None:
                found = db.execute(
                    f"SELECT 1 FROM entries WHERE {kind} = ? LIMIT 1", [only]
                ).fetchone()
                for table in ("poll_runs", "cursors") if kind == "source" else ():
                    found = (
                        found
                        or db.execute(
                            f"SELECT 1 FROM {table} WHERE source = ? LIMIT 1", [only]
                        ).fetchone()
                    )
                return [only] if found else []
            known = {r[0] for r in db.execute(_DISTINCT.format(col=kind))}
            for table in ("poll_runs", "cursors") if kind == "source" else ():
                known.update(r[0] for r in db.execute(f"SELECT DISTINCT source FROM {table}"))
        return sorted(known)


#: SQL giving each entry's bucket label from its stored UTC timestamp, by (group, local).
#: SQLite's `localtime` reads the same TZ rules as Python's `astimezone()`.
_BUCKET_SQL = {
    ("day", False): "substr(timestamp, 1, 10)",
    ("hour", False): "substr(timestamp, 1, 10) || ' ' || substr(timestamp, 12, 2) || ':00'",
    ("day", True): "strftime('%Y-%m-%d', timestamp, 'localtime')",
    ("hour", True): "strftime('%Y-%m-%d %H:00', timestamp, 'localtime')",
}

# The distinct values of an indexed column, one index seek each (a skip scan): a store of
# millions of entries and a handful of sources answers at once.
_DISTINCT = """
WITH RECURSIVE v(x) AS (
    SELECT min({col}) FROM entries
    UNION ALL SELECT (SELECT min({col}) FROM entries WHERE {col} > v.x) FROM v WHERE v.x IS NOT NULL
) SELECT x FROM v WHERE x IS NOT NULL
"""


if TYPE_CHECKING:

    def _implements_interface(store: Store) -> interface.Store:
        """Checked by mypy (never run): the SQLite store is a `logd.store.interface.Store`."""
        return store
