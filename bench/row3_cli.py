"""Row 3, CLI start-up: whole `logd` processes, as a user's shell runs them.

Each command is the venv's `bin/logd` script in a fresh process, stdout captured (a pipe, so
`query` prints its plain table); the figure is the median wall time of 7 runs after one warm-up,
next to `python -c pass` on the same interpreter measured in the same rounds. Rounds interleave
the commands, so a machine getting busier moves the baseline too.

- `logd --help` (plugin commands included);
- `logd query timeout --db DB --limit 50` on the store (1,000,000 entries when row 2 passes its
  store in; otherwise one built here);
- the same query finding the store through a config file (`-c config.toml`).

Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, written by the warm-up), as it is for
an installed logd, whatever PYTHONDONTWRITEBYTECODE this process runs with.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Figure, count_entries

from logd import Entry, Status
from logd.store.sqlite.store import Store

ROW = "3 CLI"
RUNS = 7
TARGET_ABOVE_MS = 150.0
SMALL_STORE = 20_000
BATCH = 1_000
ERRORS = ["Timeout while contacting upstream after 30s", "Connection refused", "HTTP 502"]
WORDS = ["order", "stock", "invoice", "shipment", "vehicle", "ticket", "sync", "update"]
SOURCES = ["fleet", "shop", "maestra"]


def build_store(path: Path, n: int) -> None:
    """`n` entries over 90 days, a tenth failures (a third of those say "Timeout")."""
    rng = random.Random(3)
    now = datetime.now(UTC)
    with Store(path) as store:
        for start in range(0, n, BATCH):
            by_source: dict[str, list[Entry]] = {}
            for i in range(start, min(n, start + BATCH)):
                failed = rng.random() < 0.1
                entry = Entry(
                    native_id=str(i),
                    timestamp=now - timedelta(seconds=rng.random() * 90 * 86_400),
                    status=Status.FAILURE if failed else Status.SUCCESS,
                    message=" ".join(rng.choices(WORDS, k=3)),
                    error=rng.choice(ERRORS) if failed else None,
                    raw={"id": i},
                )
                by_source.setdefault(SOURCES[i % len(SOURCES)], []).append(entry)
            for source, entries in by_source.items():
                store.commit_batch(source, entries, None, provider=source)


def write_config(path: Path, db: Path) -> None:
    """A config like `logd demo` writes: the database and one source."""
    path.write_text(
        f"database = {json.dumps(str(db))}\n"
        'log_level = "warning"\n\n'
        "[[sources]]\n"
        'name = "fleet"\n'
        'provider = "fleetit"\n'
        'base_url = "http://127.0.0.1:9"\n'
        'token = "bench-token"\n'
        'fleet_id = "1"\n'
    )


def child_env(cache: Path) -> dict[str, str]:
    """This environment with bytecode caching on, no logd overrides, a fixed terminal width."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["COLUMNS"] = "120"
    return env


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall milliseconds of one process, and its stdout (it must exit 0)."""
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-800:]}")
    return took, done.stdout


def medians(
    commands: dict[str, list[str]], env: dict[str, str]
) -> tuple[dict[str, float], dict[str, str]]:
    """Median ms of each command over RUNS interleaved rounds, and its warm-up output."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    # The warm-up round writes the bytecode and brings the store's pages into the OS cache.
    outputs = {name: run_once(args, env)[1] for name, args in commands.items()}
    for _ in range(RUNS):
        for name, args in commands.items():
            samples[name].append(run_once(args, env)[0])
    return {name: statistics.median(values) for name, values in samples.items()}, outputs


def run(quick: bool, db_path: Path | None = None) -> list[Figure]:
    """Start-up figures of `logd --help` and `logd query`, against `python -c pass`."""
    logd = Path(sys.executable).with_name("logd")
    with tempfile.TemporaryDirectory(prefix="logd-row3-") as tmp:
        directory = Path(tmp)
        if db_path is None or quick:
            db = directory / "logd.db"
            build_store(db, SMALL_STORE)
        else:
            db = db_path
        entries = count_entries(db)
        config = directory / "config.toml"
        write_config(config, db)
        query = ["query", "timeout", "--limit", "50"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "logd --help": [str(logd), "--help"],
            "logd query timeout --db DB": [str(logd), *query, "--db", str(db)],
            "logd query timeout -c config.toml": [str(logd), *query, "-c", str(config)],
        }
        got, outputs = medians(commands, child_env(directory / "pycache"))
    base = got.pop("python -c pass")
    figures = []
    for name, value in got.items():
        above = value - base
        # A figure for a command that did not do its work would flatter it.
        did_work = "query" in outputs[name] if name == "logd --help" else "imeout" in outputs[name]
        figures.append(
            Figure(
                ROW,
                name + (f" ({entries:,} entries)" if "query" in name else ""),
                round(value, 1),
                "ms",
                baseline="python -c pass (same interpreter)",
                baseline_value=round(base, 1),
                target=f"≤ {TARGET_ABOVE_MS:.0f} ms above baseline",
                ok=above <= TARGET_ABOVE_MS and did_work,
                note=f"+{above:.0f} ms over the baseline; median of {RUNS} after a warm-up"
                + ("" if did_work else "; OUTPUT WRONG: no command list / no matching entry"),
            )
        )
    return figures


if __name__ == "__main__":
    db_arg = next((Path(a) for a in sys.argv[1:] if not a.startswith("--")), None)
    for figure in run(quick="--quick" in sys.argv, db_path=db_arg):
        print(json.dumps(figure.as_dict(), ensure_ascii=False))
