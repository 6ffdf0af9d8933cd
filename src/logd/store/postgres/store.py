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
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from logd import redact
from logd.errors import QueryError, StoreError
from logd.plugin.entries import Entry, Status
from logd.store.interface import (
    Attempt,
    BatchHook,
    BatchResult,
    Delivery,
    DeliveryState,
    Filters,
    Lease,
    LeaseLost,
    NewDelivery,
    RetentionResult,
    Row,
    RunProgress,
)
from logd.store.postgres import search
from logd.store.postgres.migrations import migrate
from logd.store.query_language import Node, parse
from logd.store.sqlite.rows import Prepared
from logd.store.sqlite.rows import prepare as prepare_row
from logd.store.sqlite.search import ENTRY_COLUMNS, SLOTS, time_key
from logd.store.text import searchable_text

if TYPE_CHECKING:
    from logd.store import interface

__all__ = ["PostgresStore", "Prepared", "redacted_url", "store_error"]

Connection = psycopg.Connection[TupleRow]

#: Seconds to wait for the server when connecting, and for a free pooled connection.
CONNECT_TIMEOUT = 10
#: Settings of every connection. A session idle inside a transaction for a minute is ended by
#: the server: a holder paused mid-batch (SIGSTOP, a VM frozen) would otherwise keep its lease
#: row locked and stall the takeover forever. TCP keepalives notice a host that died within
#: ~25 s, so its locks go with it.
SESSION: dict[str, str | int] = {
    "connect_timeout": CONNECT_TIMEOUT,
    "options": "-c idle_in_transaction_session_timeout=60000",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "application_name": "logd",
}
#: Keys tried again when another instance took them first (each round re-reads the free ones).
KEY_ROUNDS = 20
#: A change number is the writing transaction's id shifted left by this many bits, plus the
#: change's place in that transaction (see `_Changes`).
CHANGE_BITS = 20
#: Newest entries a text search tests one by one before it asks the word index (`search`).
#: Testing one costs ~1.5 µs; a word in fewer than limit/WALK of them (2.5 % for 50) is
#: cheaper from the index: its postings are few.
WALK = 2_000
#: Entries deleted per retention transaction: short enough that a poll never waits long.
RETENTION_CHUNK = 5_000


@dataclass(slots=True)
class PgPrepared:
    """An entry serialized for the store, its tsvector included (made outside the
    transaction, in the fetching thread)."""

    row: Prepared
    words: str


# -- the URL and what a failed call means, in one line --------------------------------------


def redacted_url(url: str) -> str:
    """`url` with its password as `***`, whether in the user part (`user:pw@host`) or a
    `?password=` parameter: the only form of the URL that is ever shown."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        if "password" in parts.query.lower():
            query = [
                (k, "***" if k.lower() == "password" else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ]
            parts = parts._replace(query=urlencode(query, safe="/*"))
        shown = urlunsplit(parts)
    except ValueError:  # not a URL that parses: show none of it
        return "the database URL"
    secret = _password(url)
    return redact.mask(shown, [secret]) if secret else shown


def _password(url: str) -> str | None:
    """The password in `url` (user part or `?password=`), or None."""
    try:
        value = psycopg.conninfo.conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        try:
            return urlsplit(url).password
        except ValueError:
            return None
    return None if value is None else str(value)


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
    if state == "25006":
        return StoreError(f"{shown} was opened read-only ({text})")
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


def _local_zone() -> tuple[str, str | None]:
    """This machine's time zone as the server can use it: (IANA name, None), from TZ or
    /etc/localtime as the C library reads them, else ("", the UTC offset now as an interval)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        target = os.path.realpath("/etc/localtime")
        name = target.partition("/zoneinfo/")[2]
    if (name and "/" in name) or name in ("UTC", "GMT"):
        return name, None
    offset = datetime.now().astimezone().utcoffset() or timedelta(0)
    return "", f"{int(offset.total_seconds())} seconds"


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


class _Changes:
    """Change numbers for one transaction: its transaction id shifted left by CHANGE_BITS,
    plus a count. Numbers grow with the transaction id, so a reader that stops below the
    oldest transaction still running (`_FINISHED`) never passes over a batch that commits
    later under an older id."""

    def __init__(self, conn: Connection) -> None:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert row is not None
        self.base = int(row[0]) << CHANGE_BITS
        self.used = 0

    def take(self, n: int) -> list[int]:
        """`n` fresh change numbers, ascending."""
        if self.used + n >= 1 << CHANGE_BITS:
            raise StoreError(f"one transaction may change at most {1 << CHANGE_BITS} entries")
        start = self.base + self.used
        self.used += n
        return list(range(start, start + n))


#: The first change number no reader may pass yet: that of the oldest transaction still
#: running (every change below it is committed or rolled back for good).
_FINISHED = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {CHANGE_BITS})"


class BatchTransaction:
    """What a batch hook may do inside the batch's transaction (`interface.BatchTransaction`)."""

    def __init__(self, conn: Connection, source: str, provider: str) -> None:
        self._conn = conn
        self._source = source
        self._provider = provider

    @property
    def source(self) -> str:
        """The source whose batch this is."""
        return self._source

    @property
    def provider(self) -> str:
        """The provider the batch's source polls through."""
        return self._provider

    def rows(self, native_ids: Sequence[str]) -> dict[int, Row]:
        """The stored rows of these entries of this source, by key (keys ascend with time)."""
        ids = [_put(n) for n in dict.fromkeys(native_ids)]
        found = self._conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE source = %s AND native_id = ANY(%b)",
            [self._source, ids],
        ).fetchall()
        return {int(r[0]): _row(r) for r in found}

    def matching(self, expression: Node, keys: Sequence[int]) -> set[int]:
        """Which of `keys` hold entries matching a parsed search expression (as `query`)."""
        return {
            int(r[0])
            for r in self._conn.execute(
                "SELECT id FROM entries WHERE id = ANY(%b) AND words @@ %s::tsquery",
                [list(keys), search.tsquery(expression)],
            )
        }

    def enqueue(self, delivery: NewDelivery, now: datetime) -> None:
        """Queue a delivery, due at `now`; it commits or rolls back with the batch."""
        stamp = _iso(now)
        self._conn.execute(
            "INSERT INTO outbox (delivery_id, sink, source, provider, count, body, "
            "next_attempt_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                delivery.delivery_id,
                delivery.sink,
                delivery.source,
                delivery.provider,
                delivery.count,
                delivery.body,
                stamp,
                stamp,
                stamp,
            ],
        )


_DELIVERY_COLUMNS = (
    "delivery_id, sink, source, provider, count, body, state, attempts, next_attempt_at, "
    "last_status, last_error, created_at, updated_at"
)


def _delivery(row: Sequence[Any]) -> Delivery:
    values = list(row)
    values[5] = bytes(values[5])
    return Delivery(*values)


#: Holders whose daemon lease (`daemon:<id>`, renewed by the daemon's heartbeat) lapsed: a
#: daemon killed on another host. Their delivery claims are void at once, not at their ttl.
_DEAD_DAEMONS = (
    "SELECT substr(name, 8) FROM leases WHERE name LIKE 'daemon:%%' "
    "AND expires_at <= clock_timestamp()"
)


class PostgresStore:
    """One logd database on a PostgreSQL server, shared by any number of instances."""

    def __init__(
        self, url: str, *, create: bool = True, readonly: bool = False, max_connections: int = 4
    ) -> None:
        """Connect to `url` (`postgresql://…`) and, with `create`, bring its schema up to date.

        `readonly`: the server refuses every write (`logd query`, `status`, `stats`), which
        then raises StoreError. Raises StoreError, one line saying what to do, for any failure.
        """
        self.url = url
        self.location = redacted_url(url)
        if secret := _password(url):
            redact.register(secret)
        #: This host, to tell this host's poll runs (whose pids mean something here).
        self.host = socket.gethostname()
        try:
            # One direct connection first: a pool retries in the background and would only
            # say that it timed out, where this says why (refused, password, no database).
            session = dict(SESSION)
            if readonly:
                session["options"] = f"{SESSION['options']} -c default_transaction_read_only=on"
                create = False
            with psycopg.connect(url, autocommit=True, **session) as conn:  # type: ignore[arg-type]
                if create:
                    migrate(conn)
                elif conn.execute("SELECT to_regclass('entries')").fetchone() == (None,):
                    raise StoreError(f"{self.location} is not a logd database (no entries table)")
            self.pool = psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=max_connections,
                timeout=CONNECT_TIMEOUT,
                kwargs=session,
                open=True,
            )
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise store_error(exc, url) from exc

    def close(self) -> None:
        """Close every pooled connection; the store is unusable afterwards."""
        self.pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

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

    def claim_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew lease `name` for `holder` for `ttl` seconds; None while another
        holder's lease has not expired.

        A new holding (free, expired, or released) takes a new fencing token from a sequence;
        the holder renewing its live lease keeps its token. Times are the server's clock, so
        hosts whose clocks differ agree on expiry.
        """
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

    def release_lease(self, lease: Lease) -> None:
        """Give a lease up now (another holder may take it at once); no-op when it already
        passed to another holder. The row stays, so tokens keep growing."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = clock_timestamp() "
                "WHERE name = %s AND holder = %s AND token = %s",
                [lease.name, lease.holder, lease.token],
            )

    def leases(self) -> list[Lease]:
        """Every lease, expired ones included, by name (for `status`)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT name, holder, token, expires_at FROM leases ORDER BY name"
            ).fetchall()
        return [Lease(r[0], r[1], int(r[2]), r[3]) for r in rows]

    @staticmethod
    def _hold(conn: Connection, lease: Lease) -> None:
        """Lock `lease`'s row for the rest of the transaction; LeaseLost unless it still holds.

        The row lock makes a takeover wait until this transaction ends, so a write checked
        here commits before any new holder's first write, never after it.
        """
        row = conn.execute(
            "SELECT holder, token, expires_at > clock_timestamp() FROM leases "
            "WHERE name = %s FOR UPDATE",
            [lease.name],
        ).fetchone()
        if row is None or row[0] != lease.holder or int(row[1]) != lease.token:
            now_held = "nobody" if row is None else row[0]
            raise LeaseLost(
                f"lease {lease.name}: {lease.holder} (token {lease.token}) lost it to "
                f"{now_held}; nothing of this write was stored, the new holder does it"
            )
        if not row[2]:
            raise LeaseLost(
                f"lease {lease.name}: {lease.holder}'s lease lapsed before the write "
                "committed (renew it well before it expires); nothing of this write was stored"
            )

    # -- writing ----------------------------------------------------------------------------

    def prepare(self, entry: Entry, provider: str) -> PgPrepared:
        """Serialize `entry` of a source of `provider` and cut its words, outside the
        transaction (`commit_batch`)."""
        row = prepare_row(entry, provider)
        return PgPrepared(row, search.tsvector(entry.message, entry.error, row.text))

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
        """Store entries, the cursor, the run's counters and the hooks' work in one
        transaction; unchanged entries are left alone, each change gets a change number.

        With `lease`, only while it holds (checked under the lease row's lock in this
        transaction): otherwise LeaseLost and nothing is written.
        """
        result = BatchResult(backfill=backfill)
        preps = [
            p if isinstance(p, PgPrepared) else self.prepare(e, provider)
            for e, p in zip(entries, prepared or [None] * len(entries), strict=True)
        ]
        for prep in preps:
            if prep.row.provider != provider:  # the row and its hash name the provider
                raise ValueError(f"entries prepared for {prep.row.provider!r}, not {provider!r}")
        rows: dict[str, tuple[Entry, PgPrepared]] = {}
        for entry, prep in zip(entries, preps, strict=True):
            if entry.status is Status.INVALID and entry.native_id in rows:
                continue
            rows[entry.native_id] = (entry, prep)
        with self._tx() as conn:
            if lease is not None:
                self._hold(conn, lease)
            changes = _Changes(conn)
            existing = self._existing(conn, source, list(rows))
            now = _now()
            fresh: list[tuple[Entry, PgPrepared, str]] = []
            for entry, prep in rows.values():
                old = existing.get(entry.native_id)
                if old is None:
                    if entry.status is Status.INVALID:
                        result.invalid.append(entry)
                    else:
                        result.new += 1
                        if entry.status == Status.FAILURE:
                            result.new_failures.append(entry)
                    fresh.append((entry, prep, now))
                elif entry.status is Status.INVALID and old[3] != Status.INVALID:
                    result.unchanged += 1  # never replaced by an unreadable copy of itself
                else:
                    self._update(conn, changes, source, entry, prep, old, now, result)
            self._insert(conn, changes, source, fresh, now)
            if cursor is not None:
                conn.execute(
                    "INSERT INTO cursors (source, cursor, updated_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                    "updated_at = excluded.updated_at",
                    [source, json.dumps(cursor, sort_keys=True), now],
                )
            if run is not None:
                conn.execute(
                    "UPDATE poll_runs SET pages = pages + %s, new = new + %s, "
                    "updated = updated + %s, failures = failures + %s WHERE id = %s",
                    [run.pages, result.new, result.updated, len(result.new_failures), run.run_id],
                )
            if hooks:
                tx = BatchTransaction(conn, source, provider)
                for hook in hooks:
                    hook(tx, result)
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
            "FROM entries WHERE source = %s AND native_id = ANY(%b)",
            [source, [_put(n) for n in native_ids]],
        ).fetchall()
        return {str(_get(r[0])): tuple(r[1:]) for r in rows}

    def _update(
        self,
        conn: Connection,
        changes: _Changes,
        source: str,
        entry: Entry,
        prep: PgPrepared,
        old: tuple[Any, ...],
        now: str,
        result: BatchResult,
    ) -> None:
        """Re-fetched entry: rewrite it when anything changed, record a status change."""
        key, old_hash, old_details_hash, old_status, old_ts, first_seen = old
        row = prep.row
        if entry.timestamp_observed and row.timestamp != old_ts:
            # The provider only knows when it saw the record; the first sighting stands.
            entry.timestamp = datetime.fromisoformat(old_ts)
            prep = self.prepare(entry, row.provider)
            row = prep.row
        same_details = row.details is None or row.details_hash == old_details_hash
        if old_hash == row.hash and same_details:
            result.unchanged += 1
            return
        if row.details is None and old_details_hash is not None:
            # No new download: keep the stored one (read only now, not for every re-fetch).
            found = conn.execute("SELECT details FROM entries WHERE id = %s", [key]).fetchone()
            details = found[0] if found else "null"
            text = searchable_text(
                [entry.raw, json.loads(details)], known=(entry.message, entry.error)
            )
            row = replace(row, details=details, details_hash=old_details_hash, text=text)
            prep = PgPrepared(row, search.tsvector(entry.message, entry.error, text))
        if old_ts == row.timestamp:
            conn.execute(
                "UPDATE entries SET provider = %s, timestamp = %s, status = %s, message = %s, "
                "error = %s, entity_type = %s, entity_id = %s, raw = %s, details = %s, "
                "search_text = %s, hash = %s, details_hash = %s, timestamp_observed = %s, "
                "words = %s::tsvector, updated_at = %s, change_seq = %s WHERE id = %s",
                [*self._values(entry, prep)[1:], now, changes.take(1)[0], key],
            )
        else:  # the time moved, so the key moves with it
            conn.execute("DELETE FROM entries WHERE id = %s", [key])
            key = self._insert(conn, changes, source, [(entry, prep, first_seen)], now)[0]
        result.updated += 1
        if old_status != entry.status:
            conn.execute(
                "INSERT INTO status_changes (entry, source, native_id, old_status, "
                "new_status, at) VALUES (%s, %s, %s, %s, %s, %s)",
                [key, source, _put(entry.native_id), old_status, str(entry.status), now],
            )
            if entry.status == Status.FAILURE:
                result.new_failures.append(entry)

    @staticmethod
    def _values(entry: Entry, prep: PgPrepared) -> list[Any]:
        """native_id, the stored columns from provider to timestamp_observed, the tsvector."""
        row = prep.row
        return [
            _put(entry.native_id),
            row.provider,
            row.timestamp,
            str(entry.status),
            _put(entry.message),
            _put(entry.error),
            _put(entry.entity_type),
            _put(entry.entity_id),
            row.raw,
            row.details,
            _put(row.text),
            row.hash,
            row.details_hash,
            bool(entry.timestamp_observed),
            prep.words,
        ]

    def _insert(
        self,
        conn: Connection,
        changes: _Changes,
        source: str,
        rows: list[tuple[Entry, PgPrepared, str]],
        now: str,
    ) -> list[int]:
        """Insert new entries (each with its first_seen); return their keys in order.

        Each takes the first free key of its microsecond (keys stay in time order, and in
        batch order within an instant), in one statement for the lot. A key another
        instance took meanwhile is skipped by the insert (`ON CONFLICT (id) DO NOTHING`,
        which waits for that instance's transaction to end); those entries try again.
        """
        if not rows:
            return []
        values = [(self._values(e, p), first_seen) for e, p, first_seen in rows]
        starts = [p.row.key for _, p, _ in rows]
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
                    "details_hash, timestamp_observed, words, first_seen, updated_at, "
                    "change_seq) "
                    "SELECT k, %s, n, p, ts, st, m, e, et, ei, r, d, s, h, dh, o, w::tsvector, "
                    "f, %s, c FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[], %b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[], "
                    "%b::text[], %b::bigint[]) "
                    "AS t(k, n, p, ts, st, m, e, et, ei, r, d, s, h, dh, o, w, f, c) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    [
                        source,
                        now,
                        [keys[i] for i in todo],
                        *map(list, columns),
                        [values[i][1] for i in todo],
                        changes.take(len(todo)),
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
            "FROM unnest(%b::bigint[]) AS s",
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
                [source, _now(), os.getpid(), f"{self.host}:{os.getpid()}"],
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

    def known_ids(self, source: str, native_ids: Sequence[str]) -> set[str]:
        """Which of `native_ids` are stored for `source` (quarantined records do not count)."""
        with self._tx() as conn:
            found = self._existing(conn, source, list(native_ids))
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
        """Entries matching `filters`, newest first (`limit` None or 0 = all).

        A text search with a limit is asked in two steps, because the planner cannot tell a
        rare word from a common one outside its statistics' most common words (it guesses a
        few hundred matches for any other). Measured on 1M entries: newest first by walking
        the primary key, a common word takes 0.4 ms and a word of one entry 356 ms; from the
        word index (a bitmap, then a sort), the rare word 0.5 ms and the common one 95 ms. So
        the walk goes first, over the newest WALK entries at most (a few ms); a word with
        fewer than `limit` matches among them is rare enough for the index.
        """
        query, params = self._search_sql(filters, limit)
        words = self._tsquery(filters)
        with self._tx() as conn:
            if limit and words is not None:
                others, walk_params = self._where(filters, text=False)
                walk = (
                    f"SELECT * FROM (SELECT {_COLUMNS}, words FROM entries"
                    + (" WHERE " + " AND ".join(others) if others else "")
                    + f" ORDER BY id DESC LIMIT {max(WALK, 40 * limit)}) AS newest "
                    "WHERE words @@ %s::tsquery ORDER BY id DESC LIMIT %s"
                )
                found = conn.execute(walk, [*walk_params, words, limit]).fetchall()
                if len(found) >= limit:
                    return [_row(r[:-1]) for r in found]
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute("SET LOCAL enable_indexscan = off")
            return [_row(r) for r in conn.execute(query, params).fetchall()]

    def _search_sql(self, filters: Filters, limit: int | None) -> tuple[str, list[Any]]:
        where, params = self._where(filters)
        query = f"SELECT {_COLUMNS} FROM entries"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC"
        if limit:
            query += " LIMIT %s"
            params.append(limit)
        return query, params

    def explain(self, filters: Filters, *, limit: int | None = 50) -> str:
        """The server's plan for `search(filters, limit=limit)` (EXPLAIN: planned, not run);
        for a text search with a limit, the plan of the word-index step after the walk."""
        query, params = self._search_sql(filters, limit)
        with self._tx() as conn:
            if limit and self._tsquery(filters) is not None:
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute("SET LOCAL enable_indexscan = off")
            return "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + query, params))

    @staticmethod
    def _tsquery(f: Filters) -> str | None:
        """The tsquery of `f.text`, or None when it has no word (every entry matches).

        Raises QueryError for an `--fts` expression that is not valid.
        """
        node = parse(f.text, plain=not f.fts) if f.text else None
        return None if node is None else search.tsquery(node)

    def _where(self, f: Filters, *, text: bool = True) -> tuple[list[str], list[Any]]:
        """WHERE terms and parameters for `f` (with `text`, its words as a tsquery first)."""
        where: list[str] = []
        params: list[Any] = []
        if text and (query := self._tsquery(f)) is not None:
            where.append("words @@ %s::tsquery")
            params.append(query)
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
                where.append(f"{column} = ANY(%b)")
                params.append(list(values))
        return where, params

    def changes_after(
        self, seq: int, *, filters: Filters | None = None, limit: int = 1000
    ) -> list[tuple[int, Row]]:
        """Entries stored or changed after change number `seq`, oldest change first, with
        their change numbers (`query --follow`, exports).

        Only changes of transactions that have all finished are read: a batch another
        instance is still committing, under an older transaction id (so lower numbers),
        is never passed over; it is read once it commits.
        """
        where, params = self._where(filters or Filters())
        where += ["change_seq > %s", f"change_seq < {_FINISHED}"]
        params.append(seq)
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT change_seq, {_COLUMNS} FROM entries WHERE {' AND '.join(where)} "
                "ORDER BY change_seq LIMIT %s",
                [*params, limit],
            ).fetchall()
        return [(int(r[0]), _row(r[1:])) for r in rows]

    def last_change(self) -> int:
        """The latest change number every reader can see (0 for an empty store): a change
        still committing has a larger one, so following from here misses nothing."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT coalesce(max(change_seq), 0) FROM entries WHERE change_seq < {_FINISHED}"
            ).fetchone()
        return int(row[0]) if row else 0

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
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT source, started, pid, holder FROM poll_runs WHERE id IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source) AND finished IS NULL"
            ).fetchall()
        return {
            r[0]: (r[1], r[2] if (r[3] or "").rpartition(":")[0] == self.host else None)
            for r in rows
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
        self, daemon: str, source: str, next_run: datetime | None, interval: float, failures: int
    ) -> None:
        """Record when daemon `daemon` next polls `source`, its interval, failures in a row."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO daemon_schedule (daemon, source, next_run, interval, "
                "consecutive_failures, updated_at) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (daemon, source) DO UPDATE SET next_run = excluded.next_run, "
                "interval = excluded.interval, "
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
        """Forget daemon `daemon`'s schedule of `sources` (all of its rows when None)."""
        with self._tx() as conn:
            if sources is None:
                conn.execute("DELETE FROM daemon_schedule WHERE daemon = %s", [daemon])
            else:
                conn.execute(
                    "DELETE FROM daemon_schedule WHERE daemon = %s AND source = ANY(%b)",
                    [daemon, list(sources)],
                )

    def schedule(self) -> dict[str, dict[str, Any]]:
        """Per scheduled source: daemon, next_run, interval, consecutive_failures (the
        soonest next run when two daemons list one source)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT source, next_run, interval, consecutive_failures, daemon "
                "FROM daemon_schedule ORDER BY source, next_run DESC NULLS FIRST"
            ).fetchall()
        return {
            r[0]: {"daemon": r[4], "next_run": r[1], "interval": r[2], "consecutive_failures": r[3]}
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
        self, *, since: datetime, by: Literal["day", "hour"], local: bool = False
    ) -> list[dict[str, Any]]:
        """Per source and day or hour (`by`, UTC or with `local` this machine's zone) from
        `since` on: entries, failures, failure_rate, pending; empty buckets left out."""
        fmt = {"day": "YYYY-MM-DD", "hour": "YYYY-MM-DD HH24:00"}[by]
        zone, offset = _local_zone() if local else ("UTC", None)
        when = "AT TIME ZONE %s" if offset is None else "AT TIME ZONE %s::interval"
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT source, to_char(timestamp::timestamptz {when}, %s) AS bucket, "
                "count(*), count(*) FILTER (WHERE status = 'failure'), "
                "count(*) FILTER (WHERE status = 'pending') FROM entries WHERE id >= %s "
                "GROUP BY source, bucket ORDER BY source, bucket",
                [zone if offset is None else offset, fmt, time_key(since)],
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

    def names(self, kind: Literal["source", "provider"], *, only: str | None = None) -> list[str]:
        """Every source (with entries, poll runs or a cursor) or provider stored, sorted; with
        `only`, whether that one is (`[only]` or `[]`), one index probe each."""
        column = {"source": "source", "provider": "provider"}[kind]
        tables = ("poll_runs", "cursors") if kind == "source" else ()
        with self._tx() as conn:
            if only is not None:
                probes = [f"SELECT 1 FROM entries WHERE {column} = %s"]
                probes += [f"SELECT 1 FROM {t} WHERE source = %s" for t in tables]
                query = "SELECT " + " OR ".join(f"EXISTS ({p})" for p in probes)
                row = conn.execute(query, [only] * len(probes)).fetchone()
                return [only] if row and row[0] else []
            # The distinct values of an indexed column, one index probe each (a loose index
            # scan): millions of entries of a handful of sources answer at once.
            known = {
                r[0]
                for r in conn.execute(
                    f"WITH RECURSIVE v AS (SELECT min({column}) AS name FROM entries "
                    f"UNION ALL SELECT (SELECT min({column}) FROM entries WHERE {column} > v.name) "
                    "FROM v WHERE v.name IS NOT NULL) SELECT name FROM v WHERE name IS NOT NULL"
                )
            }
            for table in tables:
                known.update(r[0] for r in conn.execute(f"SELECT DISTINCT source FROM {table}"))
        return sorted(known)

    def count(self) -> int:
        """How many entries are stored."""
        with self._tx() as conn:
            row = conn.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0

    # -- the outbox: deliveries to sinks ----------------------------------------------------

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
        `ttl` seconds: no other holder gets them until then (nor, without `ids`, the rows
        behind them: one lane, one sender, first in, first out).

        Claims of one sink are taken one at a time (an advisory lock for the transaction), and
        the rows with `FOR UPDATE SKIP LOCKED`: holders claiming at the same moment on
        different hosts never get one row twice, and none waits on a row another transaction
        is writing. Claims run on the caller's clock, as due times do (`now`).
        """
        stamp = _iso(now)
        params: dict[str, Any] = {
            "sink": sink,
            "now": stamp,
            "at": now,
            "ids": list(ids),
            "limit": limit,
            "holder": holder,
            "ttl": ttl,
        }
        where = [
            "sink = %(sink)s",
            "state = 'pending'",
            "next_attempt_at <= %(now)s",
            "(claimed_by IS NULL OR claimed_by = %(holder)s OR claimed_until <= %(at)s "
            f"OR claimed_by IN ({_DEAD_DAEMONS}))",
        ]
        if ids:
            where.append("delivery_id = ANY(%(ids)s)")
        else:
            where.append(
                "id < coalesce((SELECT min(id) FROM outbox WHERE sink = %(sink)s "
                "AND state = 'pending' AND next_attempt_at > %(now)s), 9e18)"
            )
        returning = ", ".join(f"o.{c.strip()}" for c in _DELIVERY_COLUMNS.split(","))
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [sink])
            if not ids:
                busy = conn.execute(
                    "SELECT 1 FROM outbox WHERE sink = %(sink)s AND state = 'pending' "
                    "AND claimed_by <> %(holder)s AND claimed_until > %(at)s "
                    f"AND claimed_by NOT IN ({_DEAD_DAEMONS}) LIMIT 1",
                    params,
                ).fetchone()
                if busy:
                    return []  # another holder sends this lane now: the rows wait their turn
            rows = conn.execute(
                f"WITH due AS (SELECT id FROM outbox WHERE {' AND '.join(where)} "
                "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE outbox o SET claimed_by = %(holder)s, "
                "claimed_until = %(at)s + make_interval(secs => %(ttl)s) "
                f"FROM due WHERE o.id = due.id RETURNING o.id, {returning}",
                params,
            ).fetchall()
        return [_delivery(r[1:]) for r in sorted(rows, key=lambda r: int(r[0]))]

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
        with self._tx() as conn:
            if attempts:
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE outbox SET state = %s, attempts = attempts + 1, "
                        "last_status = %s, last_error = %s, next_attempt_at = %s, "
                        "updated_at = %s, claimed_by = NULL, claimed_until = NULL "
                        "WHERE delivery_id = %s",
                        [
                            (
                                a.state,
                                a.status,
                                a.error,
                                _iso(a.next_attempt_at),
                                _iso(a.at),
                                a.delivery_id,
                            )
                            for a in attempts
                        ],
                    )
            if hold and until is not None:
                conn.execute(
                    "UPDATE outbox SET next_attempt_at = greatest(next_attempt_at, %s), "
                    "claimed_by = NULL, claimed_until = NULL "
                    "WHERE state = 'pending' AND delivery_id = ANY(%b)",
                    [_iso(until), list(hold)],
                )

    def due_sinks(self, now: datetime, *, ids: Sequence[str] = ()) -> list[str]:
        """The sinks with a pending delivery due (among `ids` when given); no bodies read."""
        query = "SELECT DISTINCT sink FROM outbox WHERE state = 'pending' AND next_attempt_at <= %s"
        params: list[Any] = [_iso(now)]
        if ids:
            query += " AND delivery_id = ANY(%b)"
            params.append(list(ids))
        with self._tx() as conn:
            return sorted(r[0] for r in conn.execute(query, params))

    def next_due_at(self, sinks: Sequence[str]) -> datetime | None:
        """When the next delivery to one of `sinks` is due (its lane's oldest pending row's
        next attempt: each lane is first in, first out), or None when none is pending."""
        if not sinks:
            return None
        with self._tx() as conn:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE id IN (SELECT min(id) FROM "
                "outbox WHERE state = 'pending' AND sink = ANY(%b) GROUP BY sink)",
                [list(sinks)],
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def list_deliveries(
        self,
        *,
        state: DeliveryState | None = None,
        ids: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Delivery]:
        """Outbox rows, newest first, optionally one state or the given delivery ids."""
        where: list[str] = []
        params: list[Any] = []
        if state:
            where.append("state = %s")
            params.append(state)
        if ids:
            where.append("delivery_id = ANY(%b)")
            params.append(list(ids))
        query = f"SELECT {_DELIVERY_COLUMNS} FROM outbox"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC"
        if limit:
            query += " LIMIT %s"
            params.append(limit)
        with self._tx() as conn:
            return [_delivery(r) for r in conn.execute(query, params).fetchall()]

    def outbox_counts(self, by: Literal["source", "sink"]) -> dict[str, dict[str, int]]:
        """Per source or sink: pending, dead and done delivery counts."""
        column = {"source": "source", "sink": "sink"}[by]
        out: dict[str, dict[str, int]] = {}
        with self._tx() as conn:
            for key, state, n in conn.execute(
                f"SELECT {column}, state, count(*) FROM outbox GROUP BY {column}, state"
            ).fetchall():
                out.setdefault(key, dict.fromkeys(("pending", "dead", "done"), 0))[state] = n
        return out

    def make_due(self, ids: Sequence[str], now: datetime) -> list[str]:
        """Make deliveries due now: the named ones (dead included), else every pending one.
        Returns the ids made due; unknown or done ids are left out."""
        stamp = _iso(now)
        with self._tx() as conn:
            if ids:
                rows = conn.execute(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = %s, updated_at = %s "
                    "WHERE state IN ('pending', 'dead') AND delivery_id = ANY(%b) "
                    "RETURNING delivery_id",
                    [stamp, stamp, list(ids)],
                ).fetchall()
            else:
                rows = conn.execute(
                    "UPDATE outbox SET next_attempt_at = %s WHERE state = 'pending' "
                    "RETURNING delivery_id",
                    [stamp],
                ).fetchall()
        made = {r[0] for r in rows}
        return [i for i in ids if i in made] if ids else sorted(made)

    def sink_position(self, sink: str) -> int:
        """How far a sink that follows the change sequence got (0 before its first send)."""
        with self._tx() as conn:
            row = conn.execute("SELECT seq FROM sink_positions WHERE sink = %s", [sink]).fetchone()
        return int(row[0]) if row else 0

    def set_sink_position(self, sink: str, seq: int, *, lease: Lease | None = None) -> None:
        """Record that `sink` has everything up to change `seq` (never moves back); fenced
        by `lease` when given (LeaseLost, nothing written, once it passed on)."""
        with self._tx() as conn:
            if lease is not None:
                self._hold(conn, lease)
            conn.execute(
                "INSERT INTO sink_positions (sink, seq, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (sink) DO UPDATE SET seq = greatest(sink_positions.seq, "
                "excluded.seq), updated_at = excluded.updated_at",
                [sink, seq, _now()],
            )

    # -- retention --------------------------------------------------------------------------

    def apply_retention(
        self,
        older_than: float,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
        chunk: int = RETENTION_CHUNK,
    ) -> RetentionResult:
        """Delete entries, poll runs, status changes and delivered alerts older than
        `older_than` seconds; entries in short transactions of `chunk`, oldest keys first.

        The space is reused by the server (autovacuum): `pages_freed` stays 0.
        """
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
            # Keep each source's latest successful and latest failed run: `status` reads them.
            result.poll_runs = conn.execute(
                "DELETE FROM poll_runs WHERE started < %s AND id NOT IN "
                "(SELECT max(id) FROM poll_runs GROUP BY source, error IS NULL)",
                [stamp],
            ).rowcount
            result.status_changes = conn.execute(
                "DELETE FROM status_changes WHERE at < %s", [stamp]
            ).rowcount
            # Delivered alerts are history; pending and dead ones stay until dealt with.
            result.deliveries = conn.execute(
                "DELETE FROM outbox WHERE state = 'done' AND updated_at < %s", [stamp]
            ).rowcount
        return result


if TYPE_CHECKING:  # mypy checks that the class is the interface, method for method

    def _conforms(store: PostgresStore) -> interface.Store:
        return store

    def _hook_conforms(tx: BatchTransaction) -> interface.BatchTransaction:
        return tx
