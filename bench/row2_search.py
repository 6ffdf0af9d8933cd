"""Row 2: search. `logd query TEXT --limit 50` in-process on the corpus store, newest first.

Each query is what the CLI runs after parsing its options: `build_filters`, the store search
and the table written to a buffer, on a store opened once (as by a warm process). Its floor is
FTS5 alone walking its rowids down: `MATCH … ORDER BY rowid DESC LIMIT 50` on the same index.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

from common import Figure, timed_ms

from logd.cli.output import write_rows
from logd.cli.query import build_filters
from logd.store.interface import Filters
from logd.store.sqlite.reader import Reader
from logd.store.sqlite.search import text_match

ROW = "2 search"
TERMS = {
    "common term (invoice)": ("invoice", False),
    "rare term (ORD-<n>)": (None, False),  # filled with a real order number
    'phrase ("sku missing")': ('"sku missing"', True),
}
FILTERS: dict[str, dict[str, Any]] = {
    "": {},
    "--source shop": {"sources": ("shop",)},
    "--status failure": {"statuses": ("failure",)},
    "--since 7d": {"since": "7d"},
}


def run(quick: bool, db: Path) -> list[Figure]:
    """p50/p95 of each term, alone and with each filter, next to the FTS5 floor."""
    runs = 30 if quick else 50
    reader = Reader(db)
    raw = sqlite3.connect(db)
    total = raw.execute("SELECT count(*) FROM entries").fetchone()[0]
    rare = f'"ORD-{total // 2}"'
    figures = []
    for label, (text, fts) in TERMS.items():
        text = text or rare
        match = text_match(Filters(text=text, fts=fts))
        hits = raw.execute(
            "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH ?", [match]
        ).fetchone()[0]
        floor, _ = timed_ms(
            lambda m=match: raw.execute(
                "SELECT rowid FROM entries_fts WHERE entries_fts MATCH ? "
                "ORDER BY rowid DESC LIMIT 50",
                [m],
            ).fetchall(),
            runs,
        )
        unfiltered = None
        for flag, extra in FILTERS.items():
            options: dict[str, Any] = {
                "sources": (),
                "providers": (),
                "statuses": (),
                "since": None,
                "until": None,
                **extra,
            }
            filters = build_filters(text=text, fts=fts, **options)

            def query(f: Any = filters) -> None:
                rows = reader.search(f, limit=50)
                write_rows(rows, "table", io.StringIO(), color=False)

            p50, p95 = timed_ms(query, runs)
            if unfiltered is None:
                unfiltered = p50
            within = p50 <= 5.0 and (not flag or p50 <= 2 * unfiltered)
            figures.append(
                Figure(
                    ROW,
                    f"{label} {flag}".strip(),
                    p50,
                    "ms p50",
                    "FTS5 MATCH … ORDER BY rowid DESC LIMIT 50",
                    floor,
                    "p50 ≤ 5 ms" + ("; ≤ 2 × unfiltered" if flag else ""),
                    within,
                    f"p95 {p95:.2f} ms; {hits:,} hits of {total:,}"
                    + (f"; {p50 / unfiltered:.1f} × unfiltered" if flag else ""),
                )
            )
    raw.close()
    reader.close()
    return figures
