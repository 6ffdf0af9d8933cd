"""Copying a SQLite store into a PostgreSQL store (`logd migrate-store`), resumably.

Entries, poll runs and outbox deliveries go over in key order, a chunk per transaction; each
chunk moves the copy's progress row (`_logd_copy`) forward in the same transaction, so a copy
that is killed resumes after the last chunk it committed and never stores a row twice. Cursors
go last, once every entry they stand for is there. At the end the row counts of both stores
are compared: a difference is an error naming it.

The SQLite store must not change meanwhile: stop `logd run` (and any `logd sync`) first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logd.errors import StoreError
from logd.store.postgres import search
from logd.store.postgres.store import PostgresStore, _Changes, _put
from logd.store.sqlite.export import SqliteExport

#: Rows per transaction.
CHUNK = 5_000


@dataclass
class CopyResult:
    """What a copy stored in this run, and the verified totals of both stores."""

    entries: int = 0
    poll_runs: int = 0
    deliveries: int = 0
    cursors: int = 0
    resumed: bool = False
    totals: dict[str, int] = field(default_factory=dict)


def copy_sqlite(
    source: SqliteExport,
    target: PostgresStore,
    *,
    chunk: int = CHUNK,
    progress: Callable[[str, int], None] | None = None,
) -> CopyResult:
    """Copy `source` into `target` (empty, or holding an earlier copy of `source` that was
    interrupted); `progress(what, rows so far)` after each chunk. Raises StoreError."""
    origin = str(source.path.resolve())
    result = CopyResult()
    with target._tx() as conn:
        row = conn.execute(
            "SELECT last_entry, finished_at FROM _logd_copy WHERE origin = %s", [origin]
        ).fetchone()
        if row is None:
            if conn.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is not None:
                raise StoreError(
                    f"{target.location} already holds entries that are not a copy of "
                    f"{source.path}; copy into an empty database"
                )
            conn.execute("INSERT INTO _logd_copy (origin) VALUES (%s)", [origin])
        else:
            result.resumed = True
    result.entries = _copy_chunks(
        source.entries, target, origin, "last_entry", _store_entries, chunk, progress, "entries"
    )
    result.poll_runs = _copy_chunks(
        source.poll_runs, target, origin, "last_run", _store_runs, chunk, progress, "poll runs"
    )
    result.deliveries = _copy_chunks(
        source.outbox, target, origin, "last_delivery", _store_deliveries, chunk, progress,
        "deliveries",
    )  # fmt: skip
    cursors = source.cursors()
    with target._tx() as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO cursors (source, cursor, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, "
                "updated_at = excluded.updated_at",
                cursors,
            )
        conn.execute(
            "SELECT setval('poll_runs_id_seq', greatest((SELECT max(id) FROM poll_runs), 1))"
        )
    result.cursors = len(cursors)
    result.totals = _verify(source, target)
    with target._tx() as conn:
        conn.execute("UPDATE _logd_copy SET finished_at = now() WHERE origin = %s", [origin])
    return result


Writer = Callable[[Any, list[tuple[Any, ...]]], None]


def _copy_chunks(
    read: Callable[[int, int], list[tuple[Any, ...]]],
    target: PostgresStore,
    origin: str,
    column: str,
    store: Writer,
    chunk: int,
    progress: Callable[[str, int], None] | None,
    what: str,
) -> int:
    """Copy rows after the recorded key, a chunk per transaction; return how many."""
    copied = 0
    while True:
        with target._tx() as conn:
            # Locked: a second copy of the same store running at once waits, then goes on
            # from where this one got.
            row = conn.execute(
                f"SELECT {column} FROM _logd_copy WHERE origin = %s FOR UPDATE", [origin]
            ).fetchone()
            assert row is not None
            rows = read(int(row[0]), chunk)
            if not rows:
                return copied
            store(conn, rows)
            conn.execute(
                f"UPDATE _logd_copy SET {column} = %s WHERE origin = %s", [rows[-1][0], origin]
            )
        copied += len(rows)
        if progress is not None:
            progress(what, copied)


def _store_entries(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    changes = _Changes(conn)
    columns: list[list[Any]] = [[] for _ in range(20)]
    for r in rows:
        (key, source, provider, native_id, ts, status, message, error, etype, eid, raw,
         details, text, hash_, details_hash, observed, first_seen, updated_at) = r  # fmt: skip
        values = [
            key, source, provider, _put(native_id), ts, status, _put(message), _put(error),
            _put(etype), _put(eid), raw, details, _put(text), hash_, details_hash,
            bool(observed), first_seen, updated_at, search.tsvector(message, error, text),
        ]  # fmt: skip
        for i, value in enumerate(values):
            columns[i].append(value)
    columns[19] = changes.take(len(rows))
    conn.execute(
        "INSERT INTO entries (id, source, provider, native_id, timestamp, status, message, "
        "error, entity_type, entity_id, raw, details, search_text, hash, details_hash, "
        "timestamp_observed, first_seen, updated_at, words, change_seq) "
        "SELECT k, s, p, n, ts, st, m, e, et, ei, r, d, x, h, dh, o, f, u, w::tsvector, c "
        "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::text[], %b::text[], %b::boolean[], %b::text[], %b::text[], %b::text[], "
        "%b::bigint[]) AS t(k, s, p, n, ts, st, m, e, et, ei, r, d, x, h, dh, o, f, u, w, c)",
        columns,
    )


def _store_runs(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO poll_runs (id, source, started, finished, pages, requests, new, "
            "updated, failures, error, pid, waiting, waiting_until) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            rows,
        )


def _store_deliveries(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (delivery_id, sink, source, provider, count, body, state, "
            "attempts, next_attempt_at, last_status, last_error, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (delivery_id) DO NOTHING",
            [(*r[1:6], bytes(r[6]) if not isinstance(r[6], str) else r[6].encode(), *r[7:])
             for r in rows],
        )  # fmt: skip


def _verify(source: SqliteExport, target: PostgresStore) -> dict[str, int]:
    """Both stores' row counts, compared; StoreError naming every difference."""
    want = source.counts()
    with target._tx() as conn:
        have = {
            "entries": conn.execute("SELECT count(*) FROM entries").fetchone(),
            "cursors": conn.execute("SELECT count(*) FROM cursors").fetchone(),
            "poll_runs": conn.execute("SELECT count(*) FROM poll_runs").fetchone(),
            "outbox": conn.execute("SELECT count(*) FROM outbox").fetchone(),
        }
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    got = {k: int(v[0]) if v else 0 for k, v in have.items()}
    wrong = [
        f"{k}: {want[k]} in {source.path}, {got[k]} in the copy" for k in want if want[k] != got[k]
    ]
    for state, n in source.outbox_states().items():
        if int(states.get(state, 0)) != n:
            wrong.append(
                f"{state} deliveries: {n} in {source.path}, {states.get(state, 0)} in the copy"
            )
    if wrong:
        raise StoreError(
            "the copy does not match: " + "; ".join(wrong) + " (did logd write to "
            f"{source.path} during the copy? stop it and run the same command again)"
        )
    return got
