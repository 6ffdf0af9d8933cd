"""Two `logd run` processes share one PostgreSQL store; the one polling is killed -9 mid-backfill.

The survivor must take the source over once the dead daemon's lease lapses (`lease_ttl`) and
finish the backfill: every record stored once, the cursor not behind what is stored (a sync
afterwards finds nothing new), every failure delivered (those the dead daemon had claimed
too), and none twice under two delivery ids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from logd_fleetit import FleetITSimulator

from logd.delivery.receiver import Receiver
from logd.plugin.testing import write_config
from logd.store import open_store
from logd.store.interface import Filters

RECORDS = 1500
LEASE_TTL = 2.0
LOGD = Path(sys.executable).with_name("logd")


def run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(LOGD), "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_survivor_finishes_the_backfill_after_the_holder_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    with FleetITSimulator(records=RECORDS) as sim, Receiver(secret="s" * 24) as rx:
        sim.latency = 0.15  # 15 pages of 100: a few seconds, so the kill lands mid-backfill
        fleet = {**sim.demo_source("fleet"), "interval": 1}
        hook = {"name": "ops", "url": rx.url, "secret": "s" * 24, "alert_backfill": True}
        config = write_config(
            tmp_path, [fleet], database=pg_url, lease_ttl=f"{LEASE_TTL}s", webhooks=[hook]
        )
        procs = {"a": run(config, tmp_path / "a.log")}
        store = open_store(pg_url)
        try:

            def stored() -> int:
                return len(store.search(Filters(), limit=None))

            wait(lambda: stored() >= 200, 30, "daemon a never stored a page")
            procs["b"] = run(config, tmp_path / "b.log")
            [lease] = [x for x in store.leases() if x.name == "source:fleet"]
            holder_pid = int(lease.holder.split(":")[1])
            victim = next(p for p in procs.values() if p.pid == holder_pid)
            before = stored()
            assert before < RECORDS, "the backfill ended before the kill"
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            killed_at = time.monotonic()
            wait(lambda: stored() > before, 30, "nobody took the source over")
            takeover = time.monotonic() - killed_at
            print(f"failover: the survivor stored its first batch {takeover:.2f}s after kill -9")
            wait(lambda: stored() == RECORDS, 60, f"stored {stored()} of {RECORDS}")
            # The lease lapses LEASE_TTL after the last renewal; the survivor then polls on
            # its next interval (1 s), so the takeover takes at most about their sum.
            assert takeover < LEASE_TTL + 1 + 5, f"takeover took {takeover:.1f}s"
            rows = store.search(Filters(), limit=None)
            assert len({r.native_id for r in rows}) == RECORDS == len(rows)
            # Every failure is delivered, those the killed daemon had claimed too: its claims
            # are void once its own lease (`daemon:<id>`) lapses, not a claim's ttl later.
            failures = {r.native_id for r in rows if r.status == "failure"}

            def delivered() -> set[str]:
                return {e["native_id"] for r in rx.received for e in r.json()["entries"]}

            wait(lambda: delivered() >= failures, 30, "deliveries claimed by the dead daemon")
            survivor = next(p for p in procs.values() if p.poll() is None)
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(30) == 0
            # No failure sent twice under two delivery ids (a repeat keeps its id).
            ids_of: dict[str, set[str]] = defaultdict(set)
            for received in rx.received:
                body = received.json()
                for entry in body["entries"]:
                    ids_of[entry["native_id"]].add(body["delivery_id"])
            assert all(len(ids) == 1 for ids in ids_of.values())
            assert set(ids_of) == failures
            # The cursor is not behind what is stored: a sync now finds nothing new.
            synced = subprocess.run(
                [str(LOGD), "sync", "-c", str(config)], capture_output=True, text=True, timeout=60
            )
            assert synced.returncode == 0, synced.stdout + synced.stderr
            assert ", 0 new, 0 updated" in synced.stdout, synced.stdout
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            store.close()
