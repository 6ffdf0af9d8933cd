"""Row 6, webhooks: new failures → signed deliveries to a local receiver, under `logd run`.

A FleetIT simulator is served by uvicorn in its own process (about a fifth of its records are
failures); the real daemon runs as a subprocess with that one source and one webhook pointed at
a receiver on 127.0.0.1 (a thread here) that verifies each signature and notes when each
delivery arrived. The daemon backfills the simulator, queueing deliveries in the batch
transactions, and delivers them while the backfill runs.

- delivered: every failure stored arrives exactly once (delivery ids and entry ids checked);
- deliveries/s: deliveries over the span from the first commit to the last receipt, next to
  the pace the backfill queued them at (first to last commit): a daemon that keeps up
  delivers about as fast as it queues, whatever this machine's ingest rate;
- latency: per failure, from the commit of its batch (the outbox row's `created_at`, stamped
  inside that transaction just before COMMIT: at most a few ms early, so the figure is on the
  safe side) to its arrival at the receiver; same machine, same clock.

The note gives a bare httpx client's rate, POSTing the same signed bodies to the same receiver
over one connection one after another: the ceiling of one serial lane, far above the pace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from common import Figure, percentiles, query_store
from logd_fleetit import FleetITSimulator
from serve import served

from logd.delivery.signing import sign, verify

ROW = "6 webhooks"
SECRET = "bench-webhook-secret"
TARGET_P95_MS = 1000.0


@dataclass
class Arrival:
    at: float  # time.time() when the request was read
    delivery_id: str
    body: bytes
    verified: bool


class Receiver:
    """A small HTTP/1.1 (keep-alive) receiver: verify, note the arrival, answer 204."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()
        self.recording = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                ok = verify(
                    "fleetit",
                    SECRET,
                    body,
                    self.headers.get("X-Timestamp", ""),
                    self.headers.get("X-Signature", ""),
                )
                if receiver.recording:
                    got = Arrival(at, self.headers.get("X-Logd-Delivery", ""), body, ok)
                    with receiver.lock:
                        receiver.arrivals.append(got)
                self.send_response(204 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)


def _wait(cond: Any, timeout: float, what: str, log: Path) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"row 6: timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.1)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _bare_post_rate(url: str, bodies: list[tuple[str, bytes]]) -> float:
    """Deliveries/s of a bare client sending these signed bodies serially on one connection."""
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        for delivery_id, body in bodies:
            headers = {
                "Content-Type": "application/json",
                **sign("fleetit", SECRET, delivery_id, int(time.time()), body),
            }
            client.post(url, content=body, headers=headers).raise_for_status()
        return len(bodies) / (time.perf_counter() - started)


def run(quick: bool) -> list[Figure]:
    records = 5_000 if quick else 50_000  # FleetIT: about 20 % failures
    timeout = 60.0 if quick else 300.0
    with (
        tempfile.TemporaryDirectory(prefix="logd-row6-") as tmp,
        Receiver() as receiver,
        served(FleetITSimulator, "fleet", records=records) as src,
    ):
        directory = Path(tmp)
        db = directory / "logd.db"
        config = directory / "config.toml"
        # One poll: the backfill. A later poll would only re-read what is stored.
        source = {**src, "interval": "1h"}
        # The backfill is what this row delivers: its failures are alerts here, not history.
        webhook = {"name": "bench", "url": receiver.url, "secret": SECRET, "alert_backfill": True}
        doc = {"database": str(db), "sources": [source], "webhooks": [webhook]}
        config.write_text(tomli_w.dumps(doc))
        log = directory / "daemon.log"
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "logd", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
            try:
                _wait(
                    lambda: query_store(
                        db, "SELECT 1 FROM poll_runs WHERE source = 'fleet' AND finished NOT NULL"
                    ),
                    timeout,
                    "the backfill",
                    log,
                )

                def all_received() -> bool:
                    queued = query_store(db, "SELECT delivery_id, state FROM webhook_outbox")
                    if any(state != "done" for _, state in queued):
                        return False
                    got = {a.delivery_id for a in receiver.received()}
                    return {d for d, _ in queued} <= got

                _wait(all_received, timeout, "every delivery", log)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if os.environ.get("ROW6_LOG"):  # keep the daemon's log, to see what it did
            Path(os.environ["ROW6_LOG"]).write_bytes(log.read_bytes())
        time.sleep(0.2)  # nothing more should arrive; anything that does is a duplicate
        arrivals = receiver.received()
        outbox = query_store(db, "SELECT delivery_id, created_at, count, body FROM webhook_outbox")
        failures = {
            f"{source}:{native}"
            for source, native in query_store(
                db, "SELECT source, native_id FROM entries WHERE status = 'failure'"
            )
        }
        receiver.recording = False
        baseline = _bare_post_rate(receiver.url, [(d, bytes(b)) for d, _, _, b in outbox])

    created = {d: _stamp(c) for d, c, _, _ in outbox}
    counts = {d: n for d, _, n, _ in outbox}
    by_delivery: dict[str, float] = {}
    duplicate_deliveries = 0
    sent_entries: list[str] = []
    unverified = 0
    for a in arrivals:
        unverified += not a.verified
        if a.delivery_id in by_delivery:
            duplicate_deliveries += 1
            continue
        by_delivery[a.delivery_id] = a.at
        sent_entries.extend(e["id"] for e in json.loads(a.body)["entries"])
    lost = failures - set(sent_entries)
    extra = set(sent_entries) - failures
    duplicate_entries = len(sent_entries) - len(set(sent_entries))
    exact = not (lost or extra or duplicate_entries or duplicate_deliveries or unverified)
    exact = exact and set(by_delivery) == set(created)

    latencies: list[float] = []  # one per failure: its batch's commit → its delivery's receipt
    for d, at in by_delivery.items():
        if d in created:
            latencies.extend([(at - created[d]) * 1000] * counts[d])
    p50, p95 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
    span = max(by_delivery.values()) - min(created.values()) if created else 0.0
    rate = len(by_delivery) / span if span > 0 else 0.0
    queueing = max(created.values()) - min(created.values()) if created else 0.0
    pace = len(created) / queueing if queueing > 0 else None
    per = len(sent_entries) / len(by_delivery) if by_delivery else 0.0
    problems = (
        f"lost {len(lost)}, unexpected {len(extra)}, duplicate entries {duplicate_entries}, "
        f"duplicate deliveries {duplicate_deliveries}, bad signatures {unverified}"
    )
    return [
        Figure(
            ROW,
            "failures delivered exactly once",
            float(len(set(sent_entries) & failures)),
            "failures",
            target=f"all {len(failures):,}, each once",
            ok=exact and bool(failures),
            note=f"{len(by_delivery):,} deliveries, {per:.1f} failures each; {problems}",
        ),
        Figure(
            ROW,
            "deliveries/s, first commit → last receipt",
            rate,
            "deliveries/s",
            baseline="deliveries queued/s by the backfill (first → last commit)",
            baseline_value=pace,
            note=f"{len(sent_entries) / span if span > 0 else 0:,.0f} failures/s; the backfill "
            f"of {records:,} records sets the pace; a bare httpx client sends these bodies at "
            f"{baseline:,.0f}/s on one connection",
        ),
        Figure(ROW, "latency commit → receipt, p50", p50, "ms"),
        Figure(
            ROW,
            "latency commit → receipt, p95",
            p95,
            "ms",
            target=f"≤ {TARGET_P95_MS:.0f} ms",
            ok=p95 <= TARGET_P95_MS,
        ),
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(json.dumps(figure.as_dict(), ensure_ascii=False))
