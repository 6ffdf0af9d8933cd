"""Readers while a backfill writes: no "database is locked", no torn reads.

`logd sync` runs in subprocesses (a backfill of all five providers, then two incremental
rounds after the simulators grow) while readers loop: two threads in this process read the
store the way `logd query` and `logd status` do (`Reader`, `search`, `collect_status`), and
this thread runs the real `logd query --format json` and `logd status --format json`. Every
read succeeds, every row parses, and no count a reader sees ever goes down. Iterations are
bounded; the figure goes to the terminal summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from logd.cli.status import collect_status
from logd.plugin.testing import wait_until, write_config
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.store import Filters

#: Hang guard for one subprocess, not a measurement.
DEADLINE = 60.0
MAX_THREAD_READS = 3000
MAX_CLI_READS = 40


def logd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logd", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


class Monotonic:
    """Counts a reader has seen, by name: none may go down."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.seen: dict[str, int] = {}
        self.reads = 0

    def see(self, name: str, count: int) -> None:
        before = self.seen.get(name, 0)
        assert count >= before, f"{self.who}: {name} went from {before} to {count}"
        self.seen[name] = count


def check_row(row: dict[str, Any]) -> None:
    """A whole row: its time parses, its status is known, its raw record is JSON."""
    datetime.fromisoformat(row["timestamp"])
    assert row["status"] in ("success", "failure", "pending", "invalid"), row
    assert row["source"] and row["native_id"], row


def check_status(rows: list[dict[str, Any]], counts: Monotonic) -> None:
    for row in rows:
        assert row["failures"] + row["pending"] <= row["entries"], row
        counts.see(row["source"], row["entries"])


def thread_reader(db: Path, kind: str, done: threading.Event, counts: Monotonic) -> None:
    reader = Reader(db)
    try:
        while not done.is_set() and counts.reads < MAX_THREAD_READS:
            if kind == "query":
                rows = reader.search(Filters(), limit=None)
                for row in rows:
                    check_row(
                        {
                            "timestamp": row.timestamp,
                            "status": str(getattr(row.status, "value", row.status)),
                            "source": row.source,
                            "native_id": row.native_id,
                        }
                    )
                counts.see("all", len(rows))
            else:
                check_status(collect_status(reader), counts)
            counts.reads += 1
    finally:
        reader.close()


def test_readers_never_see_a_lock_or_a_torn_read(
    tmp_path: Path, profiles: dict[str, Any], figures: list[str]
) -> None:
    sims = {name: p.make() for name, p in profiles.items()}
    for sim in sims.values():
        sim.latency = 0.01  # the backfill's writes spread over a few seconds
        sim.start()
    try:
        sources = [profiles[n].source(s, n) for n, s in sims.items()]
        config = write_config(tmp_path, sources, log_level="warning")
        db = tmp_path / "logd.db"
        done = threading.Event()
        failures: list[str] = []

        def writer() -> None:
            try:
                for round_ in range(3):
                    result = logd("sync", "-q", "-c", str(config))
                    if result.returncode != 0:
                        failures.append(f"sync round {round_}: {result.stderr}")
                    for name, sim in sims.items():
                        profiles[name].grow(sim, 20)
            finally:
                done.set()

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as exc:  # reported by the main thread
                    failures.append(f"{type(exc).__name__}: {exc}")

            return run

        writing = threading.Thread(target=writer, name="writer")
        writing.start()
        wait_until(lambda: db.exists() and db.stat().st_size > 0, DEADLINE, "the database")
        wait_until(lambda: "entries" in str(logd("status", "--db", str(db)).stdout), DEADLINE)
        query_counts, status_counts = Monotonic("query thread"), Monotonic("status thread")
        readers = [
            threading.Thread(target=guarded(lambda c=c, k=k: thread_reader(db, k, done, c)), name=k)
            for k, c in (("query", query_counts), ("status", status_counts))
        ]
        for r in readers:
            r.start()

        cli = Monotonic("logd query/status")
        cli_reads = 0
        while not done.is_set() and cli_reads < MAX_CLI_READS:
            query = logd("query", "--db", str(db), "--format", "json", "-n", "0")
            status = logd("status", "--db", str(db), "--format", "json")
            for result in (query, status):
                assert result.returncode == 0, result.stderr
                assert "locked" not in result.stderr.lower(), result.stderr
            rows = json.loads(query.stdout)
            for row in rows:
                check_row(row)
            cli.see("all", len(rows))
            check_status(json.loads(status.stdout), cli)
            cli_reads += 2
        writing.join(DEADLINE * 3)
        for r in readers:
            r.join(DEADLINE)
        assert not failures, failures
        thread_reads = query_counts.reads + status_counts.reads
        total = sum(cli.seen.get(n, 0) for n in sims)
        figures.append(
            f"concurrency: {thread_reads} in-process reads and {cli_reads} `logd query`/`status` "
            f"runs during 3 sync rounds: 0 locked, 0 torn (last status saw {total} entries)"
        )
        assert cli_reads >= 2 and thread_reads >= 2
    finally:
        for sim in sims.values():
            sim.stop()
