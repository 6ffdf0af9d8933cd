"""Row 7: search that never scans. Every filter combination on 1M and 5M entries, in-process.

The grid crosses a text (common, common among failures only, rare, absent) with `--status`
(none, failure, pending, success), `--source` (none, one, two), `--provider` (none, the
source's own, another one) and a time window (none, `--since 1d`, 30 days to 7 days ago):
432 cells, each `logd query TEXT … --limit 50` as the CLI runs it after parsing its options,
on a store opened once. Half of the cells return no row: the operator's incident queries.
Each cell's p95 is one figure's sample; the row reports the worst and the median cell at each
size next to the FTS5-alone floor of the same text (`MATCH … ORDER BY rowid DESC LIMIT 50`).
Both corpora are kept under `bench/.corpora/` (`corpus.cached`): the 5M one takes half an hour
to write on the 2-core machine.
"""

from __future__ import annotations

import io
import itertools
import sqlite3
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import corpus
from common import Figure, timed_ms

from logd.cli.output import write_rows
from logd.cli.query import build_filters
from logd.store.interface import Filters
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.search import text_match

ROW = "7 search grid"
TARGET_MS = 20.0
STATUSES: list[tuple[str, ...]] = [(), ("failure",), ("pending",), ("success",)]
SOURCES: list[tuple[str, ...]] = [(), ("fleet",), ("fleet", "shop")]
PROVIDERS: list[tuple[str, ...]] = [(), ("fleet",), ("maestra",)]  # corpus: provider = source
WINDOWS: list[tuple[str | None, str | None]] = [(None, None), ("1d", None), ("30d", "7d")]


def texts(total: int) -> dict[str, str]:
    """The grid's texts: a common word, one found only in failures' errors, rare, absent."""
    return {
        "common": "invoice",
        "failures only": "timeout",
        "rare": f'"ORD-{total // 2}"',
        "absent": "zeppelin",
    }


def grid(db: Path, runs: int) -> tuple[list[tuple[float, str]], dict[str, float]]:
    """Every cell's p95 (ms) with its label, and each text's FTS5 floor p95 (ms)."""
    reader = Reader(db)
    raw = sqlite3.connect(db)
    total = raw.execute("SELECT count(*) FROM entries").fetchone()[0]
    cells: list[tuple[float, str]] = []
    floors: dict[str, float] = {}
    for name, text in texts(total).items():
        match = text_match(Filters(text=text))
        _, floors[name] = timed_ms(
            lambda m=match: raw.execute(
                "SELECT rowid FROM entries_fts WHERE entries_fts MATCH ? "
                "ORDER BY rowid DESC LIMIT 50",
                [m],
            ).fetchall(),
            runs,
        )
        for statuses, sources, providers, (since, until) in itertools.product(
            STATUSES, SOURCES, PROVIDERS, WINDOWS
        ):
            filters = build_filters(
                text=text,
                fts=False,
                sources=sources,
                providers=providers,
                statuses=statuses,
                since=since,
                until=until,
            )

            def query(f: Any = filters) -> None:
                rows = reader.search(f, limit=50)
                write_rows(rows, "table", io.StringIO(), color=False)

            _, p95 = timed_ms(query, runs)
            label = " ".join(
                [name]
                + [f"--status {s}" for s in statuses]
                + [f"--source {s}" for s in sources]
                + [f"--provider {p}" for p in providers]
                + ([f"--since {since}"] if since else [])
                + ([f"--until {until}"] if until else [])
            )
            cells.append((p95, label))
    raw.close()
    reader.close()
    return cells, floors


def figures_for(
    size: str, cells: list[tuple[float, str]], floors: dict[str, float]
) -> list[Figure]:
    """The worst and the median cell at one store size."""
    ordered = sorted(cells)
    worst, worst_label = ordered[-1]
    median = statistics.median(p for p, _ in ordered)
    floor = max(floors.values())
    over = sum(p > TARGET_MS for p, _ in ordered)
    return [
        Figure(
            ROW,
            f"{size}: worst of {len(cells)} cells, p95",
            worst,
            "ms",
            "FTS5 alone, slowest text of the grid",
            floor,
            f"p95 ≤ {TARGET_MS:g} ms",
            worst <= TARGET_MS,
            f"{worst_label}; {over} cells over {TARGET_MS:g} ms",
        ),
        Figure(
            ROW,
            f"{size}: median cell, p95",
            median,
            "ms",
            "FTS5 alone, slowest text of the grid",
            floor,
            f"p95 ≤ {TARGET_MS:g} ms",
            median <= TARGET_MS,
        ),
    ]


def run(quick: bool, db: Path) -> list[Figure]:
    """The grid on the row 2 corpus and on one five times its size (twice with `quick`)."""
    runs = 2 if quick else 20
    total = sqlite3.connect(db).execute("SELECT count(*) FROM entries").fetchone()[0]
    figures = figures_for(f"{total:,}", *grid(db, runs))
    bigger = total * (2 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="logd-bench-grid-") as tmp:
        started = datetime.now(UTC)
        if quick:
            big = Path(tmp) / "corpus-large.db"
            corpus.build(big, bigger)
        else:  # written once per version of the store's code (bench/.corpora/)
            big = corpus.cached(bigger)
        took = datetime.now(UTC) - started
        figures += figures_for(f"{bigger:,}", *grid(big, runs))
    seconds = took / timedelta(seconds=1)
    figures[-1].note = f"the {bigger:,}-entry corpus took {seconds:.0f} s (1 s: kept from before)"
    return figures
