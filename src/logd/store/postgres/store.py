"""The PostgreSQL store: entries with full-text search, cursors, poll runs, the outbox, the
daemons' schedule and per-source leases, in one database several `logd run` instances share.

The same behaviour as the SQLite store (`logd.store.sqlite.store`), row for row: entries keyed
by time (newest first is the primary key walked backwards), an unchanged re-fetch writes
nothing, a changed one is rewritten and its status change recorded. What differs is what one
shared database needs:

- Leases (`claim_source`): a source is polled by the instance holding its lease, and
  `commit_batch(lease=…)` commits only while that lease holds. The lease row is locked
  (`FOR UPDATE`) in the batch's own transaction and its holder and fencing token checked, so
  an instance that lost its lease (paused past its expiry, taken over) writes nothing.
- Deliveries are claimed with `FOR UPDATE SKIP LOCKED` (`claim_due`): each is sent by one
  instance at a time.
- Keys: two instances may store entries of the same microsecond at once; a key taken by the
  other is skipped (`ON CONFLICT (id) DO NOTHING`) and the entry takes the next free one.

Every failure is a one-line `StoreError` saying what to do; the URL's password never shows.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from logd import redact
from logd.errors import QueryError, StoreError
from logd.plugin.entries import Entry, Status, searchable_text
from logd.store.postgres import search
from logd.store.postgres.migrations import migrate
from logd.store.query_language import Node, parse
from logd.store.sqlite.rows import Prepared, prepare
from logd.store.sqlite.search import ENTRY_COLUMNS, SLOTS, Filters, Row, time_key

__all__ = ["BatchResult", "Lease", "LeaseLost", "PostgresStore", "redacted_url"]

Connection = psycopg.Connection[TupleRow]

#: Seconds to wait for the server when connecting, and for a free pooled connection.
CONNECT_TIMEOUT = 10
#: Keys tried again when another instance took them first (each round re-reads the free ones).
KEY_ROUNDS = 20


class LeaseLost(StoreError):
    """The lease this batch was committed under is no longer held: nothing was written."""


@dataclass(frozen=True)
class Lease:
    """A source's lease as granted: who holds it, its fencing token, when it lapses (UTC)."""

    name: str
    holder: str
    token: int
    expires_at: datetime


@dataclass
class BatchResult:
    """What committing one batch changed (as the SQLite store's `BatchResult`)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    new_failures: list[Entry] = field(default_factory=list)
    backfill: bool = False
    invalid: list[Entry] = field(default_factory=list)


# -- the URL and what a failed call means, in one line --------------------------------------


def redacted_url(url: str) -> str:
    """`url` with its password (if any) as `***`: the only form of it that is ever shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _target(url: str) -> tuple[str, str]:
    """(where the server is, the database name) for messages: host:port or the socket dir."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the server", "?"
    host = str(info.get("host") or "localhost")
    where = host if host.startswith("/") else f"{host}:{info.get('port') or 5432}"
    return where, str(info.get("dbname") or info.get("user") or "?")


def store_error(exc: Exception, url: str) -> StoreError:
    """The StoreError for a failed psycopg call against `url`: one line, what to do, and
    never the password (masked before the text is cut)."""
    secret = _password(url)
    text = " ".join(str(exc).split())
    if secret:
        text = redact.mask(text, [secret])
    text = text[:300]
    shown = redacted_url(url)
    where, dbname = _target(url)
    state = getattr(exc, "sqlstate", None) or ""
    low = text.lower()
    if state == "28P01" or "password authentication failed" in low or "no password" in low:
        return StoreError(
            f"{shown}: the server refused the login ({text}); check the user and password in "
            "`database` (or the secret it reads), then run again"
        )
    if (
        state.startswith("28")
        or "no pg_hba.conf entry" in low
        or ("role" in low and ("does not exist" in low))
    ):
        return StoreError(
            f"{shown}: the server does not let this user in ({text}); create the role or "
            "allow it in pg_hba.conf, then run again"
        )
    if state == "3D000" or ("database" in low and "does not exist" in low):
        return StoreError(
            f"{shown}: the database {dbname!r} does not exist on {where}; create it "
            f"(createdb {dbname}) or fix the name in `database`, then run again"
        )
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StoreError(
            f"{shown}: no database connection came free within {CONNECT_TIMEOUT:g}s; is the "
            f"server at {where} overloaded or at max_connections? Then run again"
        )
    if state == "42501" or "permission denied" in low:
        return StoreError(
            f"{shown}: permission denied ({text}); grant the user rights on the database's "
            "tables (or make it their owner), then run again"
        )
    if state == "53100" or "could not extend" in low or "no space left" in low:
        return StoreError(
            f"{shown}: the server's disk is full ({text}); the batch being written was rolled "
            "back and everything stored before it is kept; free space there, then run again"
        )
    if isinstance(exc, psycopg.OperationalError) and not state:
        return StoreError(
            f"{shown}: cannot reach the PostgreSQL server at {where} ({text}); start it or "
            "fix the host and port in `database`, then run again"
        )
    return StoreError(f"{shown}: database error: {text}")


# -- text PostgreSQL cannot hold as is -------------------------------------------------------
# A TEXT value cannot hold NUL, which a vendor's id or message may. Such text is stored with NUL
# written as ESC "0" (and ESC itself doubled), and read back exactly. ESC is a noncharacter:
# text with neither is stored as it is, which is all text in practice.
_ESC = "\U0010ffff"
_ESCAPED = re.compile(_ESC + "(.)", re.DOTALL)


def _put(text: str | None) -> str | None:
    if text is None or ("\x00" not in text and _ESC not in text):
        return text
    return text.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")


def _get(text: str | None) -> str | None:
    if text is None or _ESC not in text:
        return text
    return _ESCAPED.sub(lambda m: _ESC if m[1] == _ESC else "\x00", text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


#: ENTRY_COLUMNS in PostgreSQL (the boolean read as the 0/1 the SQLite store gives).
_COLUMNS = ENTRY_COLUMNS.replace("timestamp_observed", "timestamp_observed::int")


def _row(values: Sequence[Any]) -> Row:
    """A `Row` from a `SELECT _COLUMNS` row, text that held NUL restored."""
    v = list(values)
    for i in (3, 6, 7, 8, 9):  # native_id, message, error, entity_type, entity_id
        v[i] = _get(v[i])
    return Row.from_sql(v)


class BatchTransaction:
    """What a batch hook may do inside the batch's transaction (no raw connection)."""

    def __init__(self, store: PostgresStore, conn: Connection, source: str) -> None:
        self._store, self._conn, self.source = store, conn, source

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        """The stored rows of these entries of the batch's source, by key (time order)."""
        ids = [_put(n) for n in dict.fromkeys(native_ids)]
        found = self._conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE source = %s AND native_id = ANY(%s)",
            [self.source, ids],
        ).fetchall()
        return {int(r[0]): _row(r) for r in found}

    def matching(self, node: Node, keys: Sequence[int]) -> list[int]:
        """Those of `keys` whose entries match the parsed search expression `node`."""
        found = {
            int(r[0])
            for r in self._conn.execute(
                "SELECT id FROM entries WHERE id = ANY(%s) AND words @@ %s::tsquery",
                [list(keys), search.tsquery(node)],
            )
        }
        return [k for k in keys if k in found]

    def enqueue(
        self, *, sink: str, provider: str, delivery_id: str, body: bytes, count: int, now: datetime
    ) -> None:
        """Queue one delivery of `body` to `sink`; it commits or rolls back with the batch."""
        stamp = _iso(now)
        self._conn.execute(
            "INSERT INTO outbox (delivery_id, sink, source, provider, count, body, "
            "next_attempt_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [delivery_id, sink, self.source, provider, count, body, stamp, stamp, stamp],
        )

    def count_run(self, run_id: int, pages: int, result: BatchResult) -> None:
        """Add this batch's counts to poll run `run_id` (they commit with the batch)."""
        self._conn.execute(
            "UPDATE poll_runs SET pages = pages + %s, new = new + %s, updated = updated + %s, "
            "failures = failures + %s WHERE id = %s",
            [pages, result.new, result.updated, len(result.new_failures), run_id],
        )


@dataclass
class RetentionResult:
    """What one retention pass removed (as the SQLite store's)."""

    cutoff: datetime
    entries: int = 0
    poll_runs: int = 0
    status_changes: int = 0
    deliveries: int = 0
    pages_freed: int = 0


@dataclass
class Delivery:
    """One outbox row (the body included)."""

    delivery_id: str
    sink: str
    source: str
    provider: str
    count: int
    body: bytes
    state: str
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str


_DELIVERY_COLUMNS = (
    "delivery_id, sink, source, provider, count, body, state, attempts, next_attempt_at, "
    "last_status, last_error, created_at, updated_at"
)


def _delivery(row: Sequence[Any]) -> Delivery:
    values = list(row)
    values[5] = bytes(values[5])
    return Delivery(*values)


class PostgresStore:
    """One logd database on a PostgreSQL server, shared by any number of instances."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        holder: str | None = None,
        max_connections: int = 4,
    ) -> None:
        """Connect to `url` (`postgresql://…`) and, with `create`, bring its schema up to date.

        `holder` names this instance in leases and claims (default host:pid). Raises
        StoreError, one line saying what to do, for any failure.
        """
        self.url = url
        self.display = redacted_url(url)
        if secret := _password(url):
            redact.register(secret)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        try:
            # One direct connection first: a pool retries in the background and would only
            # say that it timed out, where this says why (refused, password, no database).
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
                if create:
                    migrate(conn)
                elif conn.execute("SELECT to_regclass('entries')").fetchone() == (None,):
                    raise StoreError(f"{self.display} is not a logd database (no entries table)")
            self.pool = psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=max_connections,
                timeout=CONNECT_TIMEOUT,
                kwargs={"connect_timeout": CONNECT_TIMEOUT},
                open=True,
            )
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise store_error(exc, url) from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.display!r})"

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction on a pooled connection; committed at the end, rolled back on any
        error; psycopg errors become StoreError."""
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise store_error(exc, self.url) from exc

    # -- leases -----------------------------------------------------------------------------

    def claim_source(self, name: str, holder: str | None = None, ttl: float = 30.0) -> Lease | None:
        """Take or renew the lease on `name` for `ttl` seconds; None when another holds it.

        A new holding (free, expired, or released before) gets a new fencing token; the
        holder renewing a live lease keeps its token. Times are the server's clock.
        """
        holder = holder or self.holder
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO leases AS l (name, holder, token, acquired_at, expires_at) "
                "VALUES (%(name)s, %(holder)s, nextval('lease_tokens'), clock_timestamp(), "
                "clock_timestamp() + make_interval(secs => %(ttl)s)) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "token = CASE WHEN l.holder = excluded.holder AND l.expires_at > "
                "clock_timestamp() THEN l.token ELSE excluded.token END, "
                "acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > "
                "clock_timestamp() THEN l.acquired_at ELSE excluded.acquired_at END, "
                "expires_at = excluded.expires_at "
                "WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder "
                "RETURNING token, expires_at",
                {"name": name, "holder": holder, "ttl": ttl},
            ).fetchone()
        return None if row is None else Lease(name, holder, int(row[0]), row[1])

    def renew(self, lease: Lease, ttl: float = 30.0) -> Lease | None:
        """Extend a live lease by `ttl` seconds from now; None when it lapsed or was taken."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE name = %s AND holder = %s AND token = %s "
                "AND expires_at > clock_timestamp() RETURNING expires_at",
                [ttl, lease.name, lease.holder, lease.token],
            ).fetchone()
        return None if row is None else replace(lease, expires_at=row[0])

    def release(self, lease: Lease) -> None:
        """Give a lease up now (another instance may take it at once); no-op if not held."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = clock_timestamp() "
                "WHERE name = %s AND holder = %s AND token = %s",
                [lease.name, lease.holder, lease.token],
            )

    def leases(self) -> dict[str, Lease]:
        """Every live lease by name: which instance holds which source, for `status`."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT name, holder, token, expires_at FROM leases "
                "WHERE expires_at > clock_timestamp() ORDER BY name"
            ).fetchall()
        return {r[0]: Lease(r[0], r[1], int(r[2]), r[3]) for r in rows}

    @staticmethod
    def _hold(conn: Connection, lease: Lease) -> None:
        """Lock `lease`'s row for the rest of the transaction; LeaseLost unless it still holds.

        The row lock makes a takeover wait until this transaction ends, so a batch checked
        here commits before any new holder's first batch, never after it.
        """
        row = conn.execute(
            "SELECT holder, token, expires_at > clock_timestamp() FROM leases "
            "WHERE name = %s FOR UPDATE",
            [lease.name],
        ).fetchone()
        if row is None or row[0] != lease.holder or int(row[1]) != lease.token:
            now_held = "nobody" if row is None else row[0]
            raise LeaseLost(
                f"source {lease.name}: the lease of {lease.holder} (token {lease.token}) was "
                f"taken over by {now_held}; this batch was not stored, the new holder polls it"
            )
        if not row[2]:
            raise LeaseLost(
                f"source {lease.name}: the lease of {lease.holder} lapsed before the batch "
                "committed (renew it more often than its expiry); this batch was not stored"
            )

    # -- writing ----------------------------------------------------------------------------

    def commit_batch(
        self,
        source: str,
        entries: Sequence[Entry],
        cursor: Any,
        *,
        hooks: Sequence[Any] = (),
        prepared: Sequence[Prepared] | None = None,
        backfill: bool = False,
        lease: Lease | None = None,
    ) -> BatchResult:
        """Store entries and their cursor in one transaction; unchanged rows are left alone.

        With `lease`, only while that lease holds (checked under a lock in this transaction):
        otherwise LeaseLost and nothing is written. Hooks get a `BatchTransaction`.
        """
        result = BatchResult(backfill=backfill)
        for entry in entries:
            if entry.source != source:
                raise ValueError(f"entry {entry.id!r} committed under source {source!r}")
        if prepared is None:
            prepared = [prepare(e) for e in entries]
        rows: dict[str, tuple[Entry, Prepared]] = {}
        for entry, prep in zip(entries, prepared, strict=True):
            if entry.status is Status.INVALID and entry.native_id in rows:
                continue
            rows[entry.native_id] = (entry, prep)
        with self._tx() as conn:
            if lease is not None:
                self._hold(conn, lease)
            existing = self._existing(conn, source, list(rows))
            now = _now()
            fresh: list[tuple[Entry, Prepared]] = []
            for entry, prep in rows.values():
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
                    result.unchanged += 1
                else:
                    self._update(conn, entry, prep, old, now, result)
            self._insert(conn, source, [(e, p, now) for e, p in fresh], now)
            if cursor is not None:
                conn.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                    "updated_at = excluded.updated_at",
                    [source, json.dumps(cursor, sort_keys=True), now],
                )
            if hooks:
                tx = BatchTransaction(self, conn, source)
                for hook in hooks:
                    hook(tx, source, result)
        return result

    @staticmethod
    def _existing(
        conn: Connection, source: str, native_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """Stored rows among `native_ids`, by native id: (key, hash, details_hash, status,
        timestamp, first_seen)."""
        if not native_ids:
            return {}
        rows = conn.execute(
            "SELECT native_id, id, hash, details_hash, status, timestamp, first_seen "
            "FROM entries WHERE source = %s AND native_id = ANY(%s)",
            [source, [_put(n) for n in native_ids]],
        ).fetchall()
        return {str(_get(r[0])): tuple(r[1:]) for r in rows}

    def _update(
        self,
        conn: Connection,
        entry: Entry,
        prep: Prepared,
        old: tuple[Any, ...],
        now: str,
        result: BatchResult,
    ) -> None:
        """Re-fetched entry: rewrite it when anything changed, record a status change."""
        key, old_hash, old_details_hash, old_status, old_ts, first_seen = old
        if entry.timestamp_observed and prep.timestamp != old_ts:
            entry.timestamp = datetime.fromisoformat(old_ts)
            prep = prepare(entry)
        same_details = prep.details is None or prep.details_hash == old_details_hash
        if old_hash == prep.hash and same_details:
            result.unchanged += 1
            return
        if prep.details is None and old_details_hash is not None:
            (details,) = conn.execute(
                "SELECT details FROM entries WHERE id = %s", [key]
            ).fetchone() or (None,)
            text = searchable_text(
                [entry.raw, json.loads(details)], known=(entry.message, entry.error)
            )
            prep = replace(prep, details=details, details_hash=old_details_hash, text=text)
        if old_ts == prep.timestamp:
            conn.execute(
                "UPDATE entries SET provider = %s, timestamp = %s, status = %s, message = %s, "
                "error = %s, entity_type = %s, entity_id = %s, raw = %s, details = %s, "
                "search_text = %s, hash = %s, details_hash = %s, timestamp_observed = %s, "
                "words = %s::tsvector, updated_at = %s, xid = pg_current_xact_id() "
                "WHERE id = %s",
                [*self._values(entry, prep)[1:], now, key],
            )
        else:  # the time moved, so the key moves with it
            conn.execute("DELETE FROM entries WHERE id = %s", [key])
            key = self._insert(conn, entry.source, [(entry, prep, first_seen)], now)[0]
        result.updated += 1
        if old_status != entry.status:
            conn.execute(
                "INSERT INTO status_changes (entry, source, native_id, old_status, "
                "new_status, at) VALUES (%s, %s, %s, %s, %s, %s)",
                [key, entry.source, _put(entry.native_id), old_status, str(entry.status), now],
            )
            if entry.status == Status.FAILURE:
                result.new_failures.append(entry)

    @staticmethod
    def _values(entry: Entry, prep: Prepared) -> list[Any]:
        """native_id, then the stored columns from provider to timestamp_observed, then the
        tsvector literal."""
        return [
            _put(entry.native_id),
            entry.provider,
            prep.timestamp,
            str(entry.status),
            _put(entry.message),
            _put(entry.error),
            _put(entry.entity_type),
            _put(entry.entity_id),
            prep.raw,
            prep.details,
            _put(prep.text),
            prep.hash,
            prep.details_hash,
            bool(entry.timestamp_observed),
            search.tsvector(entry.message, entry.error, prep.text),
        ]

    def _insert(
        self,
        conn: Connection,
        source: str,
        rows: list[tuple[Entry, Prepared, str]],
        now: str,
    ) -> list[int]:
        """Insert new entries (each with its first_seen); return their keys in order.

        Each takes the first free key of its microsecond (keys stay in time order, and in
        batch order within an instant), in one statement for the lot. A key another
        instance took meanwhile is skipped by the insert; those entries try the next free.
        """
        if not rows:
            return []
        values = [(self._values(e, p), first_seen) for e, p, first_seen in rows]
        starts = [p.key for _, p, _ in rows]
        keys: list[int] = [0] * len(rows)
        todo = list(range(len(rows)))
        tops: dict[int, int | None] = {}
        for _ in range(KEY_ROUNDS):
            self._probe(conn, tops, {s - s % SLOTS for s in (starts[i] for i in todo)})
            resume: dict[int, int] = {}
            for i in todo:
                keys[i] = self._free_key(conn, tops, resume, starts[i])
            columns = list(zip(*(values[i][0] for i in todo), strict=True))
            inserted = {
                int(r[0])
                for r in conn.execute(
                    "INSERT INTO entries (id, source, native_id, provider, timestamp, status, "
                    "message, error, entity_type, entity_id, raw, details, search_text, hash, "
                    "details_hash, timestamp_observed, words, first_seen, updated_at) "
                    "SELECT k, %s, n, p, ts, st, m, e, et, ei, r, d, s, h, dh, o, w::tsvector, "
                    "f, %s FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::text[], "
                    "%s::text[]) AS t(k, n, p, ts, st, m, e, et, ei, r, d, s, h, dh, o, w, f) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    [
                        source,
                        now,
                        [keys[i] for i in todo],
                        *map(list, columns),
                        [values[i][1] for i in todo],
                    ],
                )
            }
            todo = [i for i in todo if keys[i] not in inserted]
            if not todo:
                return keys
            for i in todo:  # taken by another instance: read that microsecond again
                tops.pop(keys[i] - keys[i] % SLOTS, None)
        raise StoreError(
            f"source {source}: {len(todo)} entries found no free key after {KEY_ROUNDS} tries "
            "(other instances storing the same instants); run again"
        )

    @staticmethod
    def _probe(conn: Connection, tops: dict[int, int | None], micros: set[int]) -> None:
        """Read the highest stored key of each microsecond in `micros` not known yet."""
        wanted = sorted(m for m in micros if m not in tops)
        if not wanted:
            return
        for start, top in conn.execute(
            "SELECT s, (SELECT max(id) FROM entries WHERE id BETWEEN s AND s + %s) "
            "FROM unnest(%s::bigint[]) AS s",
            [SLOTS - 1, wanted],
        ):
            tops[int(start)] = None if top is None else int(top)

    def _free_key(
        self, conn: Connection, tops: dict[int, int | None], resume: dict[int, int], start: int
    ) -> int:
        """The next free key at or after `start` (its microsecond, or the next ones if full)."""
        key = resume.get(start, start)
        while True:
            micro = key - key % SLOTS
            if micro not in tops:
                self._probe(conn, tops, {micro})
            top = tops[micro]
            if top is not None and top >= key:
                key = top + 1
            if key < micro + SLOTS:
                break
            key = micro + SLOTS  # full: the next microsecond
        tops[micro] = key
        resume[start] = key + 1
        return key

    def start_run(self, source: str) -> int:
        """Record the start of a poll; returns its run id."""
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO poll_runs (source, started, pid, holder) VALUES (%s, %s, %s, %s) "
                "RETURNING id",
                [source, _now(), os.getpid(), self.holder],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(
        self, run_id: int, *, requests: int | None = None, error: str | None = None
    ) -> None:
        """Record the end of a poll, with its error if it failed."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE poll_runs SET finished = %s, error = %s, "
                "requests = coalesce(%s, requests), waiting = NULL, waiting_until = NULL "
                "WHERE id = %s",
                [_now(), error, requests, run_id],
            )

    def note_waiting(
        self, run_id: int, waiting: str, until: datetime, *, timeout: float = 0.5
    ) -> bool:
        """Record that running poll `run_id` waits on `waiting` until `until`; False if busy."""
        try:
            with self.pool.connection(timeout=timeout) as conn, conn.transaction():
                conn.execute("SET LOCAL lock_timeout = %s", [f"{int(timeout * 1000)}ms"])
                conn.execute(
                    "UPDATE poll_runs SET waiting = %s, waiting_until = %s "
                    "WHERE id = %s AND finished IS NULL",
                    [waiting, until.astimezone(UTC).isoformat(timespec="seconds"), run_id],
                )
            return True
        except (psycopg.Error, psycopg_pool.PoolTimeout):
            return False

    # -- reading ----------------------------------------------------------------------------

    def cursor(self, source: str) -> Any:
        """A source's stored cursor, or None."""
        with self._tx() as conn:
            row = conn.execute("SELECT cursor FROM cursors WHERE source = %s", [source]).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def known_ids(self, source: str, native_ids: list[str]) -> set[str]:
        """Which of `native_ids` are stored for `source` (quarantined records do not count)."""
        with self._tx() as conn:
            found = self._existing(conn, source, native_ids)
        return {nid for nid, row in found.items() if row[2] != Status.INVALID}

    def get(self, entry_id: str) -> Row | None:
        """One entry by `source:native_id`."""
        source, sep, native_id = entry_id.partition(":")
        if not sep:
            raise QueryError(f"entry id {entry_id!r} should look like SOURCE:NATIVE_ID")
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE source = %s AND native_id = %s",
                [source, _put(native_id)],
            ).fetchone()
        return _row(row) if row else None

    def ids_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Up to `limit` entry ids (`source:native_id`) that start with `prefix`, in order: a
        range on the `(source, native_id)` unique index (code point order)."""
        source, sep, native = prefix.partition(":")
        column, start = ("native_id", _put(native) or "") if sep else ("source", source)
        where = ["source = %s"] if sep else []
        params: list[Any] = [source] if sep else []
        where.append(f"{column} >= %s")
        params.append(start)
        if start:
            after = ord(start[-1]) + 1
            after = 0xE000 if 0xD800 <= after < 0xE000 else min(after, 0x10FFFF)
            where.append(f"{column} < %s")
            params.append(start[:-1] + chr(after))
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT source, native_id FROM entries WHERE {' AND '.join(where)} "
                "ORDER BY source, native_id LIMIT %s",
                [*params, limit],
            ).fetchall()
        return [f"{r[0]}:{_get(r[1])}" for r in rows]

    def search(self, filters: Filters, *, limit: int | None = 50) -> list[Row]:
        """Entries matching `filters`, newest first (`limit` None or 0 = all)."""
        where, params = self._where(filters)
        query = f"SELECT {_COLUMNS} FROM entries"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC"
        if limit:
            query += " LIMIT %s"
            params.append(limit)
        with self._tx() as conn:
            return [_row(r) for r in conn.execute(query, params).fetchall()]

    @staticmethod
    def _where(f: Filters) -> tuple[list[str], list[Any]]:
        """WHERE terms and parameters for `f`: the text as a tsquery, the rest as columns."""
        where: list[str] = []
        params: list[Any] = []
        if f.text:
            node = parse(f.text, plain=not f.fts)
            if node is not None:
                where.append("words @@ %s::tsquery")
                params.append(search.tsquery(node))
        if f.since is not None:
            where.append("id >= %s")
            params.append(time_key(f.since))
        if f.until is not None:
            where.append("id < %s")
            params.append(time_key(f.until))
        for column, values in (
            ("source", f.sources),
            ("provider", f.providers),
            ("status", f.statuses),
        ):
            if len(values) == 1:  # `=`, so the (column, id) index serves newest first
                where.append(f"{column} = %s")
                params.append(values[0])
            elif values:
                where.append(f"{column} = ANY(%s)")
                params.append(list(values))
        return where, params

    def follow_mark(self) -> str:
        """Where `updated_since` starts for `--follow`: after every change finished now."""
        with self._tx() as conn:
            row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()
        assert row is not None
        return f"{row[0]}:-1"

    def updated_since(
        self, after: str, filters: Filters, *, limit: int = 1000
    ) -> list[tuple[str, Row]]:
        """Entries stored or changed after the mark `after`, oldest change first, each with
        the mark to pass next (`follow_mark` gives the first).

        Rows are ordered by the transaction that wrote them (`xid`), and only those written
        by transactions that have all finished are read: a batch another instance commits
        later, with an older transaction id, is never passed over.
        """
        xid, _, key = (after or "0:-1").partition(":")
        where, params = self._where(filters)
        where += [
            "(xid, id) > (%s::xid8, %s)",
            "xid < pg_snapshot_xmin(pg_current_snapshot())",
        ]
        params += [xid, int(key or -1)]
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT xid::text, {_COLUMNS} FROM entries WHERE {' AND '.join(where)} "
                "ORDER BY xid, id LIMIT %s",
                [*params, limit],
            ).fetchall()
        return [(f"{r[0]}:{r[1]}", _row(r[1:])) for r in rows]

    def source_stats(self) -> list[dict[str, Any]]:
        """Per source: entries, failures, pending, invalid, last poll, last success, last error,
        cursor (as the SQLite store's)."""
        with self._tx() as conn:
            counts = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT source, count(*), count(*) FILTER (WHERE status = 'failure'), "
                    "count(*) FILTER (WHERE status = 'pending'), "
                    "count(*) FILTER (WHERE status = 'invalid') FROM entries GROUP BY source"
                ).fetchall()
            }
            runs = {
                r[0]: r[1:]
                for r in conn.execute(
                    """
                    SELECT source, max(started),
                           max(CASE WHEN error IS NULL AND finished IS NOT NULL
                               THEN finished END),
                           (SELECT error FROM poll_runs p2 WHERE p2.source = p.source
                              AND p2.finished IS NOT NULL ORDER BY id DESC LIMIT 1),
                           (SELECT finished FROM poll_runs p3 WHERE p3.source = p.source
                              AND p3.error IS NOT NULL ORDER BY id DESC LIMIT 1)
                    FROM poll_runs p GROUP BY source
                    """
                ).fetchall()
            }
            cursors = {
                r[0]: json.loads(r[1]) if r[1] else None
                for r in conn.execute("SELECT source, cursor FROM cursors").fetchall()
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
                    "entries": n,
                    "failures": failures,
                    "pending": pending,
                    "invalid": invalid,
                    "last_poll": last_poll,
                    "last_success": last_success,
                    "last_error": last_error,
                    "last_error_at": last_error_at,
                    "cursor": cursors.get(source),
                }
            )
        return out

    def unfinished_runs(self) -> dict[str, tuple[str, int | None]]:
        """Per source whose latest poll run has no end: (started, pid of its process).

        The pid only when the run is this host's: a pid means nothing on another host.
        """
        host = self.holder.rpartition(":")[0]
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT source, started, pid, holder FROM poll_runs WHERE id IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source) AND finished IS NULL"
            ).fetchall()
        return {
            r[0]: (r[1], r[2] if (r[3] or "").rpartition(":")[0] == host else None) for r in rows
        }

    def run_waits(self) -> dict[str, tuple[str, str]]:
        """Per source whose running poll noted a wait: (what it waits on, until, UTC ISO)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT source, waiting, waiting_until FROM poll_runs WHERE id IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source) AND finished IS NULL "
                "AND waiting_until IS NOT NULL"
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    # -- the daemons' schedule: rows keyed by daemon, so one daemon never clears another's ---

    def set_schedule(
        self, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when this daemon next polls `source`, its interval and failures in a row."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO daemon_schedule (daemon, source, next_run, interval, "
                "consecutive_failures, updated_at) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (daemon, source) DO UPDATE SET next_run = excluded.next_run, "
                "interval = excluded.interval, "
                "consecutive_failures = excluded.consecutive_failures, "
                "updated_at = excluded.updated_at",
                [
                    self.holder,
                    source,
                    next_run.astimezone(UTC).isoformat(timespec="seconds") if next_run else None,
                    interval,
                    failures,
                    _now(),
                ],
            )

    def clear_schedule(self, sources: Sequence[str] | None = None) -> None:
        """Forget this daemon's schedule of `sources` (all of its own when None)."""
        with self._tx() as conn:
            if sources is None:
                conn.execute("DELETE FROM daemon_schedule WHERE daemon = %s", [self.holder])
            else:
                conn.execute(
                    "DELETE FROM daemon_schedule WHERE daemon = %s AND source = ANY(%s)",
                    [self.holder, list(sources)],
                )

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per source any daemon polls: next_run, interval, consecutive_failures, daemon (the
        soonest next run when two daemons list one source)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT source, next_run, interval, consecutive_failures, daemon "
                "FROM daemon_schedule ORDER BY source, next_run DESC NULLS FIRST"
            ).fetchall()
        return {
            r[0]: {
                "next_run": r[1],
                "interval": r[2],
                "consecutive_failures": r[3],
                "daemon": r[4],
            }
            for r in rows
        }

    def stats(self, *, since: datetime | None = None, by: str = "source") -> list[dict[str, Any]]:
        """Counts and failure rates grouped by source, provider or status (`by`)."""
        group = {"source": "source", "provider": "provider", "status": "status"}[by]
        where, params = "", []
        if since is not None:
            where, params = "WHERE id >= %s", [time_key(since)]
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT {group}, count(*), count(*) FILTER (WHERE status = 'failure'), "
                f"count(*) FILTER (WHERE status = 'pending') FROM entries {where} "
                f"GROUP BY {group} ORDER BY {group}",
                params,
            ).fetchall()
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
        self, *, since: datetime, by: str, zone: str | None = None
    ) -> list[dict[str, Any]]:
        """Per source and day or hour (`by`) from `since` on: entries, failures, rate, pending.

        UTC buckets, or those of the IANA time zone `zone` (e.g. "Europe/Istanbul").
        """
        fmt = {"day": "YYYY-MM-DD", "hour": "YYYY-MM-DD HH24:00"}[by]
        when = "timestamp::timestamptz AT TIME ZONE %s"
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT source, to_char({when}, %s) AS bucket, count(*), "
                "count(*) FILTER (WHERE status = 'failure'), "
                "count(*) FILTER (WHERE status = 'pending') FROM entries WHERE id >= %s "
                "GROUP BY source, bucket ORDER BY source, bucket",
                [zone or "UTC", fmt, time_key(since)],
            ).fetchall()
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

    def count(self) -> int:
        """How many entries are stored."""
        with self._tx() as conn:
            row = conn.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0

    # -- the outbox -------------------------------------------------------------------------

    def claim_due(
        self,
        sink: str,
        holder: str | None = None,
        ttl: float = 60.0,
        *,
        now: datetime | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Claim up to `limit` due deliveries of `sink` for `ttl` seconds, oldest first.

        `FOR UPDATE SKIP LOCKED`: instances claiming at the same moment get disjoint rows, and
        a claimed row is not due to others until its claim lapses (its sender died). A sink's
        lane is first in, first out: rows queued after one waiting for a retry wait too.
        """
        holder = holder or self.holder
        stamp = _iso(now or datetime.now(UTC))
        with self._tx() as conn:
            rows = conn.execute(
                "WITH due AS (SELECT id FROM outbox WHERE sink = %(sink)s AND state = 'pending' "
                "AND next_attempt_at <= %(now)s "
                "AND (claimed_until IS NULL OR claimed_until <= clock_timestamp()) "
                "AND id < coalesce((SELECT min(id) FROM outbox WHERE sink = %(sink)s "
                "AND state = 'pending' AND next_attempt_at > %(now)s), 9e18) "
                "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE outbox o SET claimed_by = %(holder)s, "
                "claimed_until = clock_timestamp() + make_interval(secs => %(ttl)s) "
                "FROM due WHERE o.id = due.id RETURNING o.id, "
                + ", ".join(f"o.{c.strip()}" for c in _DELIVERY_COLUMNS.split(",")),
                {"sink": sink, "now": stamp, "limit": limit, "holder": holder, "ttl": ttl},
            ).fetchall()
        return [_delivery(r[1:]) for r in sorted(rows)]

    def record_attempt(
        self,
        delivery_id: str,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime,
        at: datetime,
    ) -> None:
        """Record one attempt's outcome and end the claim on it."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET state = %s, attempts = attempts + 1, last_status = %s, "
                "last_error = %s, next_attempt_at = %s, updated_at = %s, claimed_by = NULL, "
                "claimed_until = NULL WHERE delivery_id = %s",
                [state, status, error, _iso(next_attempt_at), _iso(at), delivery_id],
            )

    def list_deliveries(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[Delivery]:
        """Outbox rows, newest first, optionally of one state."""
        query = f"SELECT {_DELIVERY_COLUMNS} FROM outbox"
        params: list[Any] = []
        if state:
            query += " WHERE state = %s"
            params.append(state)
        query += " ORDER BY id DESC"
        if limit:
            query += " LIMIT %s"
            params.append(limit)
        with self._tx() as conn:
            return [_delivery(r) for r in conn.execute(query, params).fetchall()]

    def outbox_counts(self, by: str = "source") -> dict[str, dict[str, int]]:
        """Per source (or sink): pending, dead and done delivery counts."""
        column = {"source": "source", "sink": "sink"}[by]
        out: dict[str, dict[str, int]] = {}
        with self._tx() as conn:
            for key, state, n in conn.execute(
                f"SELECT {column}, state, count(*) FROM outbox GROUP BY {column}, state"
            ).fetchall():
                out.setdefault(key, dict.fromkeys(("pending", "dead", "done"), 0))[state] = n
        return out

    # -- retention --------------------------------------------------------------------------

    def apply_retention(
        self,
        older_than: float,
        *,
        now: datetime | None = None,
        chunk: int = 5_000,
        stop: Any = None,
    ) -> RetentionResult:
        """Delete entries, poll runs, status changes and delivered alerts older than
        `older_than` seconds, entries in short transactions of `chunk` (the oldest keys)."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than)
        result = RetentionResult(cutoff)
        key = time_key(cutoff)
        while stop is None or not stop.is_set():
            with self._tx() as conn:
                deleted = conn.execute(
                    "DELETE FROM entries WHERE id IN "
                    "(SELECT id FROM entries WHERE id < %s ORDER BY id LIMIT %s)",
                    [key, chunk],
                ).rowcount
            result.entries += deleted
            if deleted < chunk:
                break
        stamp = cutoff.isoformat(timespec="microseconds")
        with self._tx() as conn:
            result.poll_runs = conn.execute(
                "DELETE FROM poll_runs WHERE started < %s AND id NOT IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source, error IS NULL)",
                [stamp],
            ).rowcount
            result.status_changes = conn.execute(
                "DELETE FROM status_changes WHERE at < %s", [stamp]
            ).rowcount
            result.deliveries = conn.execute(
                "DELETE FROM outbox WHERE state = 'done' AND updated_at < %s", [stamp]
            ).rowcount
        # PostgreSQL's autovacuum makes the space reusable; nothing to hand back by hand.
        return result

    def explain(self, filters: Filters, *, limit: int | None = 50) -> str:
        """The server's plan of `search(filters, limit=limit)` (EXPLAIN, not run)."""
        where, params = self._where(filters)
        query = f"EXPLAIN SELECT {_COLUMNS} FROM entries"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC"
        if limit:
            query += " LIMIT %s"
            params.append(limit)
        with self._tx() as conn:
            return "\n".join(str(r[0]) for r in conn.execute(query, params).fetchall())
