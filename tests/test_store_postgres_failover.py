"""Two processes polling one source through a PostgreSQL lease; the holder is killed -9.

Each worker claims `source:fleet`, reads the cursor, stores the next page of a fixed history
under its lease and moves the cursor, as a daemon's poll does. Killing the holder mid-backfill
must leave the other to take over once the lease lapses and finish: every record stored once,
the cursor never behind what is stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from logd.store.postgres.store import PostgresStore

TOTAL = 3000
PAGE = 50
TTL = 1.0

WORKER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime, timedelta
    from logd import Entry, Status
    from logd.store.interface import LeaseLost
    from logd.store.postgres.store import PostgresStore

    url, holder, total, page, ttl = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    base = datetime(2026, 1, 1, tzinfo=UTC)
    store = PostgresStore(url)
    while True:
        lease = store.claim_lease("source:fleet", holder, ttl)
        if lease is None:
            time.sleep(ttl / 20)
            continue
        cursor = store.cursor("fleet") or 0
        if cursor >= total:
            print("done", lease.token, flush=True)
            break
        batch = []
        for i in range(cursor, int(min(cursor + page, total))):
            e = Entry(native_id=str(i), timestamp=base + timedelta(seconds=i),
                      status=Status.FAILURE if i % 5 == 0 else Status.SUCCESS, message=f"m{i}")
            batch.append(e)
        try:
            store.commit_batch("fleet", batch, cursor + len(batch), lease=lease, provider="fleetit")
        except LeaseLost:
            continue
        print("stored", cursor + len(batch), lease.token, flush=True)
        time.sleep(0.01)  # the vendor's next page takes a moment
    """
)


def start(script: Path, url: str, holder: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), url, holder, str(TOTAL), str(PAGE), str(TTL)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_the_other_instance_takes_over_after_kill_9(tmp_path: Path, pg_url: str) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with PostgresStore(pg_url) as store:
        a = start(script, pg_url, "host-a:1")
        try:
            wait_for(lambda: (store.cursor("fleet") or 0) >= TOTAL // 4)
            b = start(script, pg_url, "host-b:2")
            try:
                a.send_signal(signal.SIGKILL)  # mid-backfill, maybe mid-commit
                a.wait(30)
                killed_at = store.cursor("fleet")
                out, _ = b.communicate(timeout=120)
            finally:
                b.kill()
        finally:
            a.kill()
        assert b.returncode == 0, out
        assert out.splitlines()[-1].startswith("done")
        assert store.cursor("fleet") == TOTAL >= killed_at
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT native_id FROM entries").fetchall()
            runs = conn.execute("SELECT count(*) FROM entries WHERE status = 'failure'").fetchone()
        assert sorted(int(r[0]) for r in rows) == list(range(TOTAL))  # each record once
        assert runs == (TOTAL // 5,)
        (lease,) = store.leases()
        assert lease.holder == "host-b:2"
