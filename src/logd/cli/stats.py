"""`logd stats`: counts over a stated window, and entries and failures over time as bars
(the counts are the store's: `Store.stats`, `Store.bucket_stats`).

Days and hours are those of the zone the tables show (UTC, or local time with `--local`; see
`logd.timeparse`), so `stats --by day` and `query --since DATE` count the same entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from logd.timeparse import show_time, zone_name

_FORMAT = {"day": "%Y-%m-%d", "hour": "%Y-%m-%d %H:00"}
_STEP = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
#: Glyphs of a bar: entries that did not fail, then failures (also red on a terminal).
OK_BAR, FAILED_BAR = "█", "▒"


def window_line(since: datetime, *, by: str, local: bool = False) -> str:
    """`entries from 2026-11-23 11:00 UTC to now` (and how they are grouped)."""
    zone = zone_name(local=local)
    line = f"entries from {show_time(since, local=local, seconds=False)} {zone} to now"
    return f"{line}, by {by} ({zone})" if by in _FORMAT else f"{line}, by {by}"


def buckets_between(first: str, last: str, by: str) -> list[str]:
    """Every day or hour label from `first` to `last`, both included."""
    fmt, step = _FORMAT[by], _STEP[by]
    at, end = datetime.strptime(first, fmt), datetime.strptime(last, fmt)
    out = []
    while at <= end:
        out.append(at.strftime(fmt))
        at += step
    return out


def write_bars(
    rows: Sequence[dict[str, Any]], by: str, out: TextIO, *, width: int, color: bool
) -> None:
    """Per source, one line per day or hour: a bar of entries whose failures are red.

    Every source gets the same buckets, from the first to the last with entries, so a quiet
    hour shows as an empty line and a failure spike lines up across sources. Each source has
    its own scale (its busiest bucket fills the bar): a quiet source's spike shows as well as
    a busy one's, and the counts beside the bars compare sources.
    """
    from rich.console import Console
    from rich.text import Text

    console = Console(
        file=out,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        soft_wrap=False,
    )
    if not rows:
        console.print("nothing to show")
        return
    labels = buckets_between(min(r[by] for r in rows), max(r[by] for r in rows), by)
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    for r in rows:
        counts.setdefault(r["source"], {})[r[by]] = (r["entries"], r["failures"])
    digits = len(f"{max(r['entries'] for r in rows):,}")
    label_width = len(labels[0])
    # "  LABEL  BAR  1,234 entries  56 failed": the bar takes what the rest leaves.
    tail = 2 + digits + len(" entries  ") + digits + len(" failed")
    bar_width = max(10, width - 2 - label_width - 2 - tail)
    console.print(Text.assemble(f"{OK_BAR} entries  ", (FAILED_BAR, "bold red"), " failures"))
    for source, by_bucket in counts.items():
        console.print(Text(source, style="bold"))
        busiest = max(n for n, _ in by_bucket.values())
        for label in labels:
            n, failed = by_bucket.get(label, (0, 0))
            length = round(n / busiest * bar_width) if n else 0
            length = max(length, 1) if n else 0
            red = min(length, max(1, round(failed / n * length))) if failed else 0
            line = Text(f"  {label}  ")
            line.append(OK_BAR * (length - red))
            line.append(FAILED_BAR * red, style="bold red")
            line.append(" " * (bar_width - length))
            line.append(f"  {n:>{digits},} entries  ")
            line.append(f"{failed:>{digits},} failed", style="red" if failed else "")
            console.print(line)
