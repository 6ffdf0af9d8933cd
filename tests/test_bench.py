"""`make bench QUICK=1` runs end to end, so the benchmark cannot rot unnoticed.

Asserts that every row produced its figures, not what they are: figures belong to the
benchmark, never to a timed test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_produces_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=420,  # a generous hang guard: another test worker shares the cores
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    figures = results["figures"]
    rows = {f["row"] for f in figures}
    assert rows == {
        "1 backfill",
        "2 search",
        "3 CLI",
        "4 memory",
        "5 idle",
        "6 webhooks",
        "7 search grid",
        "8 rate limits",
        "9 first sync",
        "10 postgres",
        "11 otlp",
    }
    assert not [f for f in figures if f["name"] == "row did not complete"], figures
    for f in figures:
        # A figure without a value must say why (the dlt peer before `make bench` installs it).
        assert f["value"] is not None or f["note"], f
    assert len([f for f in figures if f["row"] == "2 search"]) == 12
    # The worst and the median cell, at two sizes.
    assert len([f for f in figures if f["row"] == "7 search grid"]) == 4
    assert {"python", "sqlite", "logd"} <= set(results["versions"])
    assert results["machine"]["cores"]
    assert "1 backfill" in done.stdout and "6 webhooks" in done.stdout  # the printed table


def test_full_size_corpora_are_written_once_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import corpus

    written: list[int] = []
    build = corpus.build

    def counted(path: Path, n: int) -> None:
        written.append(n)
        build(path, n)

    monkeypatch.setattr(corpus, "build", counted)
    first = corpus.cached(30, tmp_path)
    assert corpus.cached(30, tmp_path) == first and written == [30]  # kept, not written again
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # one file, no WAL
    conn = sqlite3.connect(f"file:{first}?mode=ro", uri=True)
    assert conn.execute("SELECT count(*) FROM entries").fetchone() == (30,)
    conn.close()
    # Another schema (a new migration) is another corpus; the old one of that size goes.
    monkeypatch.setattr(corpus, "version", lambda: "another")
    second = corpus.cached(30, tmp_path)
    assert second != first and written == [30, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == [second.name]
    # Entries' times are relative to when it was written: an old one is written again.
    old = time.time() - corpus.MAX_AGE.total_seconds() - 60
    os.utime(second, (old, old))
    assert corpus.cached(30, tmp_path) == second and written == [30, 30, 30]
