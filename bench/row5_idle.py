"""Row 5, idle cost: requests per idle poll of each provider, and the daemon's CPU when idle.

Each of the five simulators is served by uvicorn in a process of its own (`serve.served`), so
every request crosses a real socket to a real server.

Requests per idle poll: the real engine (`logd.plugin.testing.SyncRun`) backfills a source,
then polls it again one operator interval later (5 min; Maestra 10 min, as in the READMEs: the
engine's clock is moved, nothing is slept), with nothing new at the vendor. The figure is that
poll's HTTP requests, logins and token requests included (a session still valid costs none).
The baseline is the least SOURCES.md allows, from the same config and, where it depends on the
data, from asking the simulator directly (outside logd, not counted):

- fleetit: the pages of the window from `date(watermark) - lookback`, walked whole;
- pegasus: changelog page 1 (it reaches a stored id), plus for each modifications item every
  page of every section of `[watermark - 5 min, now)`;
- elasticpath: one page per scope (same `results.total`, only known ids);
- maestra: the trailing hour is re-exported on every poll, and with the poll's new minutes it
  is one contiguous span: per export one start, the status checks until Ready, one GET a part;
- akinon: per flow and log type, the pages down to `watermark - overlap` (or further, to the
  oldest log still unfinished).

Daemon CPU: `logd run` as a subprocess with the five demo sources (their own 30 s interval, no
webhooks, the database in a temp dir). Once every source's first poll (the backfill) has
finished, the daemon's utime + stime from /proc over 60 s of wall time (quick: 10 s).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from common import Figure, query_store
from logd_akinon import AkinonSimulator
from logd_akinon.records import parse_created
from logd_elasticpath import ElasticPathSimulator
from logd_fleetit import FleetITSimulator
from logd_maestra import MaestraSimulator
from logd_pegasus import Modification, PegasusSimulator
from serve import served

from logd import parse_timestamp
from logd.plugin.testing import SyncRun
from logd.timeparse import parse_duration

ROW = "5 idle"
CPU_TARGET = 1.0  # per cent of one core
PAGE = 100
MAESTRA_READY_AFTER = 2  # the simulator answers NotReady this many times, then Ready
MAESTRA_PART_ROWS = 1000

Minimum = Callable[[dict[str, Any], Any, datetime, SyncRun], tuple[int, str]]


@dataclass(frozen=True)
class Provider:
    name: str
    factory: Callable[..., Any]
    #: An operator's interval (the README's example): how much later the idle poll runs.
    interval: float
    formula: str
    minimum: Minimum
    kwargs: dict[str, Any] = field(default_factory=dict)


# -- the least SOURCES.md allows, per provider ------------------------------------------------


def _fleetit(source: dict[str, Any], cursor: Any, now: datetime, run: SyncRun) -> tuple[int, str]:
    after = (parse_timestamp(cursor["watermark"]) - timedelta(days=1)).date()  # 1d lookback
    headers = {"Authorization": f"Bearer {source['token']}", "Fleet-Id": source["fleet_id"]}
    answer = httpx.get(
        f"{source['base_url']}/v2/integrations/logs/",
        params={"limit": 1, "timestamp_after": after.isoformat()},
        headers=headers,
    )
    count = int(answer.raise_for_status().json()["count"])
    pages = max(1, math.ceil(count / PAGE))
    return pages, f"{count} records since {after}: {pages} page(s)"


def _pegasus(source: dict[str, Any], cursor: Any, now: datetime, run: SyncRun) -> tuple[int, str]:
    base = source["base_url"]
    login = {"username": source["username"], "password": source["password"]}
    token = httpx.post(f"{base}/login", json=login).raise_for_status().json()["auth"]
    to = now.astimezone(UTC).replace(microsecond=0).isoformat()
    walks = []
    for table in source.get("modifications", []):
        item = Modification.model_validate(table)
        mark = parse_timestamp(cursor["modifications"][item.key])
        window: dict[str, Any] = {
            **item.params(),
            "from": (mark - timedelta(minutes=5)).isoformat(timespec="seconds"),
            "to": to,
            "limit": PAGE,
        }
        pages, section, sections = 0, 1, 1
        while section <= sections:
            pointer = 0
            while True:
                body = (
                    httpx.get(
                        f"{base}/changelogs/modifications",
                        params={**window, "section": section, "pointer": pointer},
                        headers={"Authenticate": token},
                    )
                    .raise_for_status()
                    .json()
                )
                pages += 1
                sections = int(body.get("sections") or 1)
                if body["next_pointer"] == -1:
                    break
                pointer = int(body["next_pointer"])
            section += 1
        walks.append(pages)
    return 1 + sum(walks), f"1 changelog page + modifications pages {walks}"


def _elasticpath(
    source: dict[str, Any], cursor: Any, now: datetime, run: SyncRun
) -> tuple[int, str]:
    scopes = len(source.get("integrations") or []) or 1
    return scopes, f"{scopes} scope(s) ({'store-wide' if scopes == 1 else 'integrations'})"


def _maestra(source: dict[str, Any], cursor: Any, now: datetime, run: SyncRun) -> tuple[int, str]:
    def duration(key: str, default: str) -> timedelta:
        return timedelta(seconds=parse_duration(source.get(key, default)))

    till = (now - duration("lag", "10m")).astimezone(UTC).replace(second=0, microsecond=0)
    since = parse_timestamp(cursor["since"])
    # The trailing re-export, or more when more new minutes came since the last poll.
    span = max(duration("reexport", "1h"), till - since)
    window = duration("window", "1d")
    exports, total, parts = math.ceil(span / window), 0, []
    for i in range(exports):
        start = till - span + i * window
        end = min(start + window, till)
        (rows,) = run.store.db.execute(
            "SELECT count(*) FROM entries WHERE source = ? AND timestamp >= ? AND timestamp < ?",
            [source["name"], start.isoformat(), end.isoformat()],
        ).fetchone()
        parts.append(math.ceil(rows / MAESTRA_PART_ROWS))
        total += 1 + (MAESTRA_READY_AFTER + 1) + parts[-1]
    checks = MAESTRA_READY_AFTER + 1
    return total, f"{exports} export(s) of {span}: 1 start + {checks} checks + parts {parts}"


def _akinon(source: dict[str, Any], cursor: Any, now: datetime, run: SyncRun) -> tuple[int, str]:
    base = source["base_url"]
    form = {"username": source["username"], "password": source["password"]}
    token = httpx.post(f"{base}/api/nifi/login", data=form).raise_for_status().text.strip()
    headers = {"Authentication": token, "Authorization": f"Bearer {token}"}
    walks = []
    for flow in source["flow_ids"]:
        for log_type in source.get("log_types", [1]):
            walk = cursor["flows"][flow][str(log_type)]
            bound = min(
                [parse_timestamp(walk["watermark"]) - timedelta(hours=1)]  # overlap default
                + [parse_timestamp(c) for c in walk.get("open", {}).values()]
            )
            page = 1
            while True:
                answer = httpx.get(
                    f"{base}/logs",
                    params={
                        "projectid": source["project_id"],
                        "flowId": flow,
                        "limit": PAGE,
                        "page": page,
                        "log_type": log_type,
                    },
                    headers=headers,
                )
                if answer.status_code == 404:  # no results
                    break
                body = answer.raise_for_status().json()
                created = [parse_created(r["created"]) for r in body["results"]]
                if not body.get("next") or any(c < bound for c in created):
                    break
                page += 1
            walks.append(page)
    return sum(walks), f"pages per flow x log type {walks}"


PROVIDERS = [
    Provider(
        "fleetit",
        FleetITSimulator,
        300,
        "pages of the window from date(watermark) - lookback, walked whole (≥ 1)",
        _fleetit,
    ),
    Provider(
        "pegasus",
        PegasusSimulator,
        300,
        "1 changelog page + Σ items: pages of all sections of [watermark - 5 min, now)",
        _pegasus,
    ),
    Provider(
        "elasticpath",
        ElasticPathSimulator,
        300,
        "1 page per scope; a valid token costs 0",
        _elasticpath,
    ),
    Provider(
        "maestra",
        MaestraSimulator,
        600,
        "per export of the trailing hour (new minutes included): 1 start + checks until "
        "Ready + 1 per part",
        _maestra,
        {"ready_after": MAESTRA_READY_AFTER, "part_rows": MAESTRA_PART_ROWS},
    ),
    Provider(
        "akinon",
        AkinonSimulator,
        300,
        "Σ flows x log types: pages down to watermark - overlap (or the oldest unfinished)",
        _akinon,
    ),
]


# -- requests per idle poll ------------------------------------------------------------------


def idle_poll(provider: Provider, source: dict[str, Any], directory: Path) -> Figure:
    """Backfill, then poll again one interval later with nothing new; that poll's requests."""
    name = source["name"]
    offset = [timedelta(0)]
    run = SyncRun(directory, [source], now=lambda: datetime.now(UTC) + offset[0])
    figure = Figure(
        ROW,
        f"{name}: requests per idle poll",
        None,
        "requests",
        baseline="minimum per SOURCES.md",
        target="= minimum",
        ok=False,
        note=provider.formula,
    )
    try:
        first = run.sync()[name]
        if not first.ok:
            figure.note += f"; backfill failed: {first.error}"
            return figure
        cursor = run.cursor(name)
        offset[0] = timedelta(seconds=provider.interval)
        now = datetime.now(UTC) + offset[0]
        report = run.sync()[name]
        figure.value = report.requests
        minimum, detail = provider.minimum(source, cursor, now, run)
        figure.baseline_value = minimum
        figure.ok = report.ok and report.requests == minimum
        figure.note += f"; here {detail}; polled {provider.interval / 60:g} min after the backfill"
        if not report.ok:
            figure.note += f"; error: {report.error}"
        elif report.new or report.updated:
            figure.note += f"; the idle poll stored {report.new} new, {report.updated} updated"
    finally:
        run.close()
    return figure


# -- the daemon's CPU ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_cpu(sources: list[dict[str, Any]], directory: Path, window: float) -> Figure:
    """The daemon's CPU per cent over `window` seconds once every source has backfilled."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "logd.db"
    config = directory / "logd.toml"
    config.write_text(tomli_w.dumps({"database": str(db), "sources": sources}))
    log = directory / "daemon.log"
    names = {s["name"] for s in sources}
    figure = Figure(
        ROW,
        "daemon CPU, 5 sources idle",
        None,
        "% of a core",
        target=f"≤ {CPU_TARGET:g} %",
        ok=False,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "logd", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                done = query_store(
                    db, "SELECT DISTINCT source FROM poll_runs WHERE finished NOTNULL"
                )
                if {row[0] for row in done} >= names:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    figure.note = f"the backfill did not finish; daemon log: {tail}"
                    return figure
                time.sleep(0.2)
            errors = query_store(db, "SELECT source, error FROM poll_runs WHERE error NOTNULL")
            (last_run,) = query_store(db, "SELECT coalesce(max(id), 0) FROM poll_runs")[0]
            started, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
            time.sleep(window)
            cpu1, took = cpu_seconds(proc.pid), time.monotonic() - started
            polls = query_store(
                db,
                "SELECT source, requests FROM poll_runs WHERE id > ? AND finished NOTNULL",
                last_run,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    figure.value = round((cpu1 - cpu0) / took * 100, 2)
    figure.ok = figure.value <= CPU_TARGET and not errors
    figure.note = (
        f"{cpu1 - cpu0:.2f} s CPU over {took:.0f} s; {len(polls)} idle polls in the window "
        f"({sum(r for _, r in polls)} requests); intervals "
        + ", ".join(f"{s['name']} {s['interval']}" for s in sources)
    )
    if not polls:
        figure.note += "; no poll fell in the window: the cost between polls only"
    if errors:
        figure.note += f"; poll errors: {errors[:3]}"
    return figure


# -- the row ------------------------------------------------------------------------------


@contextmanager
def simulators() -> Iterator[list[dict[str, Any]]]:
    """The five simulators, each under uvicorn in its own process (started side by side)."""
    with ExitStack() as stack:
        contexts = [served(p.factory, p.name, **p.kwargs) for p in PROVIDERS]
        with ThreadPoolExecutor(len(contexts)) as pool:
            futures = [pool.submit(c.__enter__) for c in contexts]
        for context, future in zip(contexts, futures, strict=True):
            if future.exception() is None:
                stack.push(context.__exit__)
        yield [future.result() for future in futures]


def run(quick: bool) -> list[Figure]:
    """One figure per provider (requests per idle poll) and the daemon's idle CPU."""
    with simulators() as sources, tempfile.TemporaryDirectory(prefix="logd-row5-") as tmp:
        directory = Path(tmp)
        figures = [
            idle_poll(p, s, directory / p.name) for p, s in zip(PROVIDERS, sources, strict=True)
        ]
        figures.append(daemon_cpu(sources, directory / "daemon", 10.0 if quick else 60.0))
    return figures


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(json.dumps(figure.as_dict(), ensure_ascii=False))
