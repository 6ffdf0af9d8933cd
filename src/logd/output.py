"""Turning stored entries into text for a terminal or a script. Only the CLI calls this."""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from .search import Row

FORMATS = ("table", "json", "ndjson", "csv")
CSV_COLUMNS = (
    "id",
    "timestamp",
    "source",
    "provider",
    "status",
    "message",
    "error",
    "entity_type",
    "entity_id",
)
STATUS_STYLE = {"failure": "bold red", "pending": "yellow", "success": "green"}


def local_time(ts: str) -> str:
    """A stored UTC timestamp in the viewer's local time, to the second."""
    return datetime.fromisoformat(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def dumps(value: Any) -> str:
    """Compact JSON for scripts."""
    return json.dumps(value, ensure_ascii=False, default=str)


def write_rows(rows: Sequence[Row], fmt: str, out: TextIO, *, color: bool = False) -> None:
    """Write entries in one of FORMATS."""
    if fmt == "json":
        json.dump([r.as_dict() for r in rows], out, ensure_ascii=False, indent=2, default=str)
        out.write("\n")
    elif fmt == "ndjson":
        for row in rows:
            out.write(dumps(row.as_dict()) + "\n")
    elif fmt == "csv":
        write_csv(rows, out, header=True)
    else:
        write_table(rows, out, color=color)


def write_csv(rows: Iterable[Row], out: TextIO, *, header: bool) -> None:
    """Entries as CSV, without raw and details."""
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        data = row.as_dict()
        writer.writerow([data[c] if data[c] is not None else "" for c in CSV_COLUMNS])


def write_table(rows: Sequence[Row], out: TextIO, *, color: bool = False) -> None:
    """Entries as a table cut to the terminal's width; local times, status coloured."""
    if not rows:
        out.write("no matching entries\n")
        return
    # Not rich: this is what every plain `logd query` prints, and rich's import and layout
    # cost more than the rest of the command (see logd.table).
    from .table import Column, one_line, render

    columns = (
        Column("time", min_width=19),
        Column("id", max_width=28, shrink=2, floor=12),
        Column("status", min_width=7),
        Column("message", shrink=1, floor=10),
    )
    cells = []
    for row in rows:
        text = row.message
        if row.error and row.error not in text:
            text = f"{text}: {row.error}" if text else row.error
        cells.append(
            [
                (local_time(row.timestamp), ""),
                (one_line(row.id), ""),
                (row.status, STATUS_STYLE.get(row.status, "")),
                (one_line(text), ""),
            ]
        )
    width = shutil.get_terminal_size((120, 24)).columns
    color = color and os.environ.get("TERM") not in ("dumb", "unknown")  # as rich decided
    for line in render(columns, cells, width, color=color):
        out.write(line + "\n")


def write_entry(row: Row, out: TextIO, *, color: bool = False) -> None:
    """One entry in full, raw record and details pretty-printed."""
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax

    console = Console(file=out, force_terminal=color, no_color=not color, soft_wrap=True)
    data = row.as_dict()
    for key in CSV_COLUMNS:  # the scalar fields, in the order a person reads them
        value = data[key]
        if key == "timestamp":
            value = f"{value}  ({local_time(value)} local)"
        # Vendor text is text: "[/api]" in an error is not rich markup.
        shown = "-" if value is None else escape(str(value))
        if key == "status":
            shown = f"[{STATUS_STYLE.get(row.status, '')}]{shown}[/]"
        console.print(f"[bold]{key:>11}[/]  {shown}")
    for key in ("raw", "details"):
        if data[key] is None:
            continue
        console.print(f"[bold]{key:>11}[/]")
        text = json.dumps(data[key], indent=2, ensure_ascii=False, default=str)
        console.print(Syntax(text, "json", theme="ansi_dark", background_color="default"))


def write_records(records: Sequence[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Plain dict rows (status, stats) as a table, JSON or NDJSON."""
    if fmt == "json":
        json.dump(list(records), out, indent=2, default=str)
        out.write("\n")
        return
    if fmt == "ndjson":
        for record in records:
            out.write(dumps(record) + "\n")
        return
    if fmt == "csv":
        if records:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=out, width=shutil.get_terminal_size((120, 24)).columns)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    if not records:
        console.print("nothing to show")
        return
    for key in records[0]:
        table.add_column(key, overflow="fold")
    for record in records:
        # A last error such as "HTTP 500 at [/api/v2]" is vendor text, not rich markup.
        table.add_row(*("-" if v is None else escape(str(v)) for v in record.values()))
    console.print(table)
