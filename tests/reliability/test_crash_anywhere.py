"""SIGKILL `logd sync` and `logd run` anywhere in a five-provider backfill; restart; finish.

The simulators and the webhook receiver live in this process, so they keep their data (and
what they received) across the kills. Kill instants are seeded: after a restarted process
reaches the network, a random delay, then SIGKILL; between kills every simulator grows, so
there is always work in flight. After the last kill an unkilled `logd sync` finishes, and:

- every record is stored exactly once: native ids equal a clean control backfill's and the
  ids the simulator's own data holds;
- every delivery queued is sent (the outbox holds nothing due) and the receiver saw each
  delivery id with one body; no entry is in two deliveries;
- after every kill, each `watermark` in a cursor is at or before the newest stored entry of
  its source, and Elastic Path's seen totals are at most what is stored.

The figure ("20 kill points: 0 lost, 0 doubled") is printed in the terminal summary.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from logd.delivery.receiver import Receiver
from logd.plugin.simulator import Simulator
from logd.plugin.testing import SyncRun, wait_until, write_config

SECRET = "crash-webhook-secret"
#: Deadline for a process to exit or to reach the network: a hang guard, not a measurement.
DEADLINE = 60.0
#: Seconds each simulated answer takes while logd is killed: pages take long enough to land in.
LATENCY = 0.02


def crash_profiles(profiles: dict[str, Any]) -> dict[str, tuple[Any, Simulator]]:
    """A bigger backfill than the fault tests', with latency so that kills land mid-walk."""
    from logd_akinon import AkinonSimulator
    from logd_elasticpath import ElasticPathSimulator
    from logd_fleetit import FleetITSimulator
    from logd_maestra import MaestraSimulator
    from logd_pegasus import PegasusSimulator

    sims: dict[str, Simulator] = {
        "fleetit": FleetITSimulator(records=800),
        "akinon": AkinonSimulator(flows=("flow-orders", "flow-stocks"), records=150, sub_logs=20),
        "elasticpath": ElasticPathSimulator(integrations=(300, 200, 100)),
        "pegasus": PegasusSimulator(records=600),
        # Exports abandoned by a killed process never finish: room for them all.
        "maestra": MaestraSimulator(records=1000, ready_after=1, max_running=1000),
    }
    for sim in sims.values():
        sim.latency = LATENCY
    return {name: (profiles[name], sim) for name, sim in sims.items()}


@pytest.fixture
def world(profiles: dict[str, Any]) -> Iterator[tuple[dict[str, tuple[Any, Simulator]], Receiver]]:
    sims = crash_profiles(profiles)
    for _, sim in sims.values():
        sim.start()
    receiver = Receiver(SECRET).start()
    yield sims, receiver
    receiver.close()
    for _, sim in sims.values():
        sim.stop()


def requests_seen(sims: dict[str, tuple[Any, Simulator]]) -> int:
    return sum(
        len(sim.requests) + sum(len(c.requests) for c in sim.companions())
        for _, sim in sims.values()
    )


def read_db(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def watermarks(cursor: Any) -> Iterator[str]:
    """Every value under a `watermark` key, at any depth of a cursor."""
    if isinstance(cursor, dict):
        for key, value in cursor.items():
            if key == "watermark" and isinstance(value, str):
                yield value
            else:
                yield from watermarks(value)


def check_cursors(db: Path) -> None:
    """No cursor ahead of what is stored."""
    if not db.exists():
        return
    assert read_db(db, "PRAGMA quick_check") == [("ok",)]
    newest = dict(read_db(db, "SELECT source, max(timestamp) FROM entries GROUP BY source"))
    counts = dict(read_db(db, "SELECT source, count(*) FROM entries GROUP BY source"))
    for source, text in read_db(db, "SELECT source, cursor FROM cursors"):
        cursor = json.loads(text) if text else None
        for mark in watermarks(cursor):
            assert source in newest, f"{source}: watermark {mark} with nothing stored"
            stored = datetime.fromisoformat(newest[source])
            assert datetime.fromisoformat(mark) <= stored, f"{source}: {mark} > {stored}"
        if isinstance(cursor, dict) and isinstance(cursor.get("totals"), dict):
            seen = sum(int(v) for v in cursor["totals"].values())
            assert seen <= counts.get(source, 0), f"{source}: totals {seen} > stored"


def simulator_ids(name: str, sim: Any) -> set[str]:
    """The native ids the simulator's own data says a complete store holds."""
    if name == "fleetit":
        return {str(r["id"]) for fleet in sim.fleets.values() for r in fleet.records}
    if name == "elasticpath":
        return {r["id"] for rows in sim.integrations.values() for r in rows}
    if name == "akinon":  # log types 1 and 2: main logs by id, sub logs as sub-{id}
        prefix = {1: "", 2: "sub-"}
        logs = [(prefix[t], rows) for (_, t), rows in sim.logs.items() if t in prefix]
        return {f"{p}{r['id']}" for p, rows in logs for r in rows}
    if name == "pegasus":  # changelogs, and the modification items of the configured resource
        ids = {r["id"] for r in sim.changelogs}
        for record in sim.changelogs:
            for item in sim.modifications_of(
                record, "vehicles", changes=("properties.OrderNumber", "name")
            ):
                ids.add(f"{item['$$id']}:{item['$$object']}")
        return ids
    if name == "maestra":  # every call: the backfill spans them all, none is within the lag
        return {r["OperationLogTransactionId"] for r in sim.records}
    raise AssertionError(name)


def start(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "logd", command, "-c", str(config)]
    if command == "sync":
        args.insert(4, "-q")
    with log.open("ab") as err:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)


def crash_and_finish(
    tmp_path: Path,
    sims: dict[str, tuple[Any, Simulator]],
    receiver: Receiver,
    kills: int,
    seed: int,
) -> str:
    rng = random.Random(seed)
    sources = [
        {**profile.source(sim, name), "interval": "1s", "timeout": "10s"}
        for name, (profile, sim) in sims.items()
    ]
    # Maestra's records span three days before now: a wider backfill keeps the oldest inside
    # whenever a run starts, so the control and the crashed store ask for the same records.
    sources[list(sims).index("maestra")]["backfill"] = "4d"
    webhook = {
        "name": "alerts",
        "url": receiver.url,
        "secret": SECRET,
        "max_entries": 50,
        "alert_backfill": True,  # every failure stored is one to alert
    }
    config = write_config(tmp_path, sources, webhooks=[webhook], log_level="warning")
    db = tmp_path / "logd.db"
    log = tmp_path / "stderr.log"

    killed = 0
    attempts = 0
    while killed < kills:
        attempts += 1
        assert attempts <= 3 * kills, f"only {killed} of {kills} kills landed\n{log.read_text()}"
        command = "sync" if attempts % 2 else "run"
        before = requests_seen(sims)
        proc = start(command, config, log)
        # At work first (past imports, on the network), then a random instant.
        wait_until(
            lambda p=proc, b=before: p.poll() is not None or requests_seen(sims) > b,
            DEADLINE,
            "logd to reach a simulator",
        )
        try:
            proc.wait(rng.uniform(0.0, 1.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(DEADLINE)
        if command == "sync" and proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"logd sync exited {proc.returncode}\n{log.read_text()[-3000:]}")
        check_cursors(db)
        for profile, sim in sims.values():
            profile.grow(sim, 3)  # the live APIs grow while logd is down

    # The last run: nothing kills it.
    for _, sim in sims.values():
        sim.latency = 0
    done = subprocess.run(
        [sys.executable, "-m", "logd", "sync", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_cursors(db)

    # Every record exactly once: against a clean control backfill of the same simulators.
    lost: dict[str, int] = {}
    doubled: dict[str, int] = {}
    control = SyncRun(tmp_path / "control", sources)
    for report in control.sync().values():
        assert report.ok, report.error
    for name in sims:
        truth = {r.native_id for r in control.rows(sources=(name,))}
        stored = [r[0] for r in read_db(db, "SELECT native_id FROM entries WHERE source = ?", name)]
        lost[name] = len(truth - set(stored))
        doubled[name] = len(stored) - len(set(stored) & truth)
    control.close()
    for name, (_, sim) in sims.items():
        stored = {r[0] for r in read_db(db, "SELECT native_id FROM entries WHERE source = ?", name)}
        assert stored == simulator_ids(name, sim), f"{name}: stored ids differ from the API's"

    # Every due delivery sent; a delivery id always with the same body; no entry twice.
    now = datetime.now(UTC).isoformat()
    due = read_db(
        db,
        "SELECT count(*) FROM webhook_outbox WHERE state != 'done' AND next_attempt_at <= ?",
        now,
    )[0][0]
    dead = read_db(db, "SELECT count(*) FROM webhook_outbox WHERE state = 'dead'")[0][0]
    queued = {d: bytes(b) for d, b in read_db(db, "SELECT delivery_id, body FROM webhook_outbox")}
    bodies: dict[str, set[bytes]] = {}
    for got in receiver.received:
        assert got.verified, "a delivery with a bad signature"
        bodies.setdefault(got.delivery_id or "", set()).add(got.body)
    assert (due, dead) == (0, 0)
    assert set(bodies) == set(queued), "a queued delivery was never received (or vice versa)"
    assert all(len(b) == 1 for b in bodies.values()), "one delivery id, two bodies"
    owners: dict[str, str] = {}
    for delivery_id, body in queued.items():
        for entry in json.loads(body)["entries"]:
            key = f"{entry['source']}:{entry['native_id']}"
            assert owners.setdefault(key, delivery_id) == delivery_id, f"{key} sent twice"
    failures = {
        f"{s}:{n}"
        for s, n in read_db(db, "SELECT source, native_id FROM entries WHERE status = 'failure'")
    }
    assert failures <= set(owners), f"{len(failures - set(owners))} failures never alerted"

    total_lost, total_doubled = sum(lost.values()), sum(doubled.values())
    repeats = len(receiver.received) - len(bodies)
    figure = (
        f"{killed} kill points (sync and run, {len(sims)} providers, seed {seed}): "
        f"{total_lost} lost, {total_doubled} doubled; {len(queued)} deliveries sent, "
        f"{repeats} repeated under the same id"
    )
    assert (total_lost, total_doubled) == (0, 0), f"{figure}: lost {lost}, doubled {doubled}"
    return figure


def test_crash_anywhere(
    tmp_path: Path,
    world: tuple[dict[str, tuple[Any, Simulator]], Receiver],
    figures: list[str],
) -> None:
    sims, receiver = world
    figures.append("crash anywhere: " + crash_and_finish(tmp_path, sims, receiver, 20, seed=16))


@pytest.mark.soak
def test_crash_anywhere_soak(
    tmp_path: Path,
    world: tuple[dict[str, tuple[Any, Simulator]], Receiver],
    figures: list[str],
) -> None:
    sims, receiver = world
    figures.append("crash soak: " + crash_and_finish(tmp_path, sims, receiver, 120, seed=1616))
