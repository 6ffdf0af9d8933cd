"""Turning stored entries into text for a terminal or a script. Only the CLI calls this."""

from __future__ import annotations

import csv
import json
import os
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from logd.cli.table import Column
from logd.store.interface import Row
from logd.timeparse import show_time, zone_name

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
STATUS_STYLE = {
    "failure": "bold red",
    "pending": "yellow",
    "success": "green",
    "invalid": "magenta",
}
#: Styles of the state words in `status` and `webhooks list` tables.
STATE_STYLE = {**STATUS_STYLE, "failing": "bold red", "dead": "bold red", "ok": "green"}


def terminal_width() -> int:
    """Cells per line: `COLUMNS`, else the terminal's, else 120 (a pipe or a file)."""
    return shutil.get_terminal_size((120, 24)).columns


def use_color(out: TextIO, color: bool | None = None) -> bool:
    """Colour when asked (or, when not said, when `out` is a terminal), unless TERM is dumb."""
    if color is None:
        color = out.isatty()
    return color and os.environ.get("TERM") not in ("dumb", "unknown")  # as rich decides


def dumps(value: Any) -> str:
    """Compact JSON for scripts."""
    return json.dumps(value, ensure_ascii=False, default=str)


def write_rows(
    rows: Sequence[Row], fmt: str, out: TextIO, *, color: bool = False, local: bool = False
) -> None:
    """Write entries in one of FORMATS (tables in UTC, or local time when `local`)."""
    if fmt == "json":
        json.dump([r.as_dict() for r in rows], out, ensure_ascii=False, indent=2, default=str)
        out.write("\n")
    elif fmt == "ndjson":
        for row in rows:
            out.write(dumps(row.as_dict()) + "\n")
    elif fmt == "csv":
        write_csv(rows, out, header=True)
    else:
        write_table(rows, out, color=color, local=local)


def write_csv(rows: Iterable[Row], out: TextIO, *, header: bool) -> None:
    """Entries as CSV, without raw and details."""
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        data = row.as_dict()
        writer.writerow([data[c] if data[c] is not None else "" for c in CSV_COLUMNS])


def write_table(
    rows: Sequence[Row],
    out: TextIO,
    *,
    color: bool = False,
    local: bool = False,
    header: bool = True,
) -> None:
    """Entries one line each, ids whole; the message is cut first, then columns left out."""
    if not rows:
        out.write("no matching entries\n")
        return
    # Not rich: this is what every plain `logd query` prints, and rich's import and layout
    # cost more than the rest of the command (see logd.table).
    from logd.cli.table import one_line, render

    # The id is what a reader copies into `logd show`: it is never cut. When the line is too
    # narrow the message is cut, then the time, the message and the status are left out.
    columns = (
        Column(f"time ({zone_name(local=local)})", min_width=19, drop=1),
        Column("id"),
        Column("status", min_width=7, drop=3),
        Column("message", shrink=1, floor=10, drop=2),
    )
    cells = []
    for row in rows:
        text = row.message
        if row.error and row.error not in text:
            text = f"{text}: {row.error}" if text else row.error
        when = show_time(row.timestamp, local=local)
        cells.append(
            [
                (f"{when}{OBSERVED_MARK}" if row.timestamp_observed else when, ""),
                (one_line(row.id), ""),
                (row.status, STATUS_STYLE.get(row.status, "")),
                (one_line(text), ""),
            ]
        )
    lines = render(columns, cells, terminal_width(), color=use_color(out, color))
    for line in lines if header else lines[1:]:
        out.write(line + "\n")
    # The mark's note, when the time column is shown (a narrow terminal leaves it out).
    shown = bool(lines) and lines[0].startswith("time")
    if header and shown and any(row.timestamp_observed for row in rows):
        out.write(f"{OBSERVED_MARK.strip()} {OBSERVED_NOTE}\n")


#: Marks a time that is logd's first sighting of the record, not the vendor's time.
OBSERVED_MARK = " ~"
OBSERVED_NOTE = "time first seen by logd: the vendor gives none, so not when it happened"


def write_entry(row: Row, out: TextIO, *, color: bool = False, local: bool = False) -> None:
    """One entry in full, raw record and details pretty-printed; `local` adds local time."""
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax

    console = Console(file=out, force_terminal=color, no_color=not color, soft_wrap=True)
    data = row.as_dict()
    for key in CSV_COLUMNS:  # the scalar fields, in the order a person reads them
        value = data[key]
        if key == "timestamp" and local:
            value = f"{value}  ({show_time(value, local=True)} {zone_name(local=True)})"
        if key == "timestamp" and row.timestamp_observed:
            value = f"{value}; {OBSERVED_NOTE}"
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


def write_records(
    records: Sequence[Mapping[str, Any]],
    fmt: str,
    out: TextIO,
    *,
    columns: Sequence[Column] = (),
    notes: Sequence[tuple[str, str]] = (),
    color: bool | None = None,
) -> None:
    """Plain dict rows (status, stats, webhook deliveries) as a table, JSON, NDJSON or CSV.

    A table has one line per record (logd.table): a key gets the `Column` in `columns` with
    its name as header (else it is kept whole, like an id). `notes` are `(name, text)` pairs
    printed whole below the table, wrapped to the terminal: the full error of a row whose
    error column was cut.
    """
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
    if not records:
        out.write("nothing to show\n")
        return
    from logd.cli.table import one_line, render

    spec = {c.header: c for c in columns}
    keys = list(records[0])
    cells = [
        [
            # Vendor text is text: "[/api/v2]" in an error is printed as it is.
            (
                "-" if r.get(k) is None else one_line(str(r[k])),
                STATE_STYLE.get(str(r[k]), "") if k in ("state", "status") else "",
            )
            for k in keys
        ]
        for r in records
    ]
    width = terminal_width()
    table = [spec.get(k, Column(k)) for k in keys]
    for line in render(table, cells, width, color=use_color(out, color)):
        out.write(line + "\n")
    if notes:
        out.write("\n")
    for name, text in notes:
        wrapped = textwrap.wrap(
            f"{name}: {one_line(text)}",
            width=max(width, 20),
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        for line in wrapped:
            out.write(line + "\n")
