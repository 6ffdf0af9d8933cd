"""`make bench`: the figures issue 11 holds logd to, each next to its baseline from this run.

    python bench/run.py [--quick] [--only 1,2] [--out FILE]

Rows: 1 backfill, 2 search, 3 CLI, 4 memory, 5 idle, 6 webhooks, 7 search grid, 8 rate limits
(one module each, `rowN_*.py`, each `run(quick) -> list[Figure]`). Prints one table and writes
bench/results.json: figures, targets, pass/fail, the machine and the versions.
`--quick` runs reduced sizes (under a minute), for the test that keeps this from rotting.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import corpus
import row1_backfill
import row2_search
import row3_cli
import row4_memory
import row5_idle
import row6_webhooks
import row7_search_grid
import row8_ratelimit
import row9_first_sync
import row10_postgres
import row11_otlp
from common import HERE, Figure

CORPUS = 1_000_000
QUICK_CORPUS = 20_000


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    """Versions of what the figures depend on (dlt's is in row 1's baseline)."""
    out = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    for name in ("logd", "httpx", "sqlite-utils", "uvicorn", "APScheduler", "pydantic"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def row(label: str, fn: Callable[[], list[Figure]]) -> list[Figure]:
    """Run one row; a crash is a failed figure with its reason, not a lost table."""
    print(f"bench: {label}…", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        figures = fn()
    except Exception as exc:
        traceback.print_exc()
        figures = [Figure(label, "row did not complete", None, "", ok=False, note=repr(exc))]
    print(f"bench: {label} took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return figures


def table(figures: list[Figure]) -> str:
    """One plain-text table of every figure."""
    lines = [
        f"{'row':<11} {'what':<52} {'value':>12}  {'baseline':>12}  {'target':<26} ok",
        "-" * 122,
    ]
    for f in figures:
        value = "—" if f.value is None else f"{f.value:,.2f} {f.unit}".strip()
        base = "—" if f.baseline_value is None else f"{f.baseline_value:,.2f}"
        ok = {True: "PASS", False: "FAIL", None: ""}[f.ok]
        lines.append(f"{f.row:<11} {f.name[:52]:<52} {value:>12}  {base:>12}  {f.target:<26} {ok}")
        detail = "; ".join(x for x in (f.baseline, f.note) if x)
        if detail:
            lines.append(f"{'':<11}   {detail}")
    return "\n".join(lines)


def main() -> int:
    """Run the rows asked for; print the table; write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, under a minute")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11", help="rows to run, e.g. 1,3")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    only = {r.strip() for r in args.only.split(",")}
    started = time.perf_counter()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="logd-bench-") as tmp:
        store = Path(tmp) / "corpus.db"
        if only & {"2", "3", "7", "10"}:
            size = QUICK_CORPUS if args.quick else CORPUS
            t = time.perf_counter()
            print(f"bench: the {size:,}-entry search corpus…", file=sys.stderr, flush=True)
            if args.quick:
                corpus.build(store, size)
            else:  # written once per version of the store's code (bench/.corpora/)
                store = corpus.cached(size)
            print(f"bench: corpus took {time.perf_counter() - t:.0f} s", file=sys.stderr)
        rows: dict[str, tuple[str, Callable[[], list[Figure]]]] = {
            "1": ("1 backfill", lambda: row1_backfill.run(args.quick)),
            "2": ("2 search", lambda: row2_search.run(args.quick, store)),
            "3": ("3 CLI", lambda: row3_cli.run(args.quick, store)),
            "4": ("4 memory", lambda: row4_memory.run(args.quick)),
            "5": ("5 idle", lambda: row5_idle.run(args.quick)),
            "6": ("6 webhooks", lambda: row6_webhooks.run(args.quick)),
            "7": ("7 search grid", lambda: row7_search_grid.run(args.quick, store)),
            "8": ("8 rate limits", lambda: row8_ratelimit.run(args.quick)),
            "9": ("9 first sync", lambda: row9_first_sync.run(args.quick)),
            "10": ("10 postgres", lambda: row10_postgres.run(args.quick, store)),
            "11": ("11 otlp", lambda: row11_otlp.run(args.quick)),
        }
        for key, (label, fn) in rows.items():
            if key in only:
                figures += row(label, fn)
    print()
    print(table(figures))
    failed = [f for f in figures if f.ok is False]
    took = time.perf_counter() - started
    print(f"\n{len(figures) - len(failed)} of {len(figures)} figures meet their target "
          f"({sum(f.ok is None for f in figures)} reported only); {took:.0f} s")  # fmt: skip
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(took, 1),
        "machine": machine(),
        "versions": versions(),
        "figures": [f.as_dict() for f in figures],
        "passed": not failed,
    }
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
