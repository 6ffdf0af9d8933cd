"""Plain text tables for every table logd prints: one line per row, ids whole.

`logd query` prints its table once and exits; importing rich and laying out its table took
about as long as the rest of the command together, and rich folds a cell that does not fit
over several lines (an id split in three, a header split in two). Here each row is one line:

- a column that may `shrink` (free text: a message, an error) gives up width first, in its
  `shrink` order, down to its `floor` (never narrower than its header), and its cells are cut
  with `…`;
- when that is not enough, whole columns are left out in their `drop` order;
- every other column (identifiers: sources, entry and delivery ids) keeps its widest cell,
  so an id is always printed whole and can be pasted into the next command.

Cell text is printed as given, never read as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAP = "  "
ELLIPSIS = "…"
#: SGR codes of the style names `logd.output` uses.
SGR = {"bold": "1", "bold red": "1;31", "red": "31", "yellow": "33", "green": "32"}


@dataclass(frozen=True)
class Column:
    """One column: its header, width limits, and how it shrinks to fit the terminal."""

    header: str
    min_width: int = 0
    max_width: int | None = None
    shrink: int = 0  # 0: keeps its width; else gives up width in this order, 1 first
    floor: int = 1  # the narrowest it shrinks to (at least its header: headers are never cut)
    drop: int = 0  # 0: always shown; else left out when too narrow, in this order, 1 first


#: A cell: its text, and the name of its style (a key of SGR) or "".
Cell = tuple[str, str]


def one_line(text: str) -> str:
    """Whitespace runs as one space, other control characters dropped (no terminal codes)."""
    flat = " ".join(text.split())
    if flat.isprintable():
        return flat
    return "".join(ch for ch in flat if ch.isprintable())


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: wide East Asian characters two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for non-ASCII text

    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def fit(text: str, width: int) -> str:
    """`text` cut to `width` cells (ending in `…` when cut) and padded to exactly `width`."""
    used = cell_width(text)
    if used > width:
        if width <= 0:
            return ""
        kept, used = [], 0
        for ch in text:
            size = cell_width(ch)
            if used + size > width - 1:
                break
            kept.append(ch)
            used += size
        text, used = "".join(kept) + ELLIPSIS, used + 1
    return text + " " * (width - used)


def widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], total: int) -> list[int]:
    """Each column's width: its widest cell within its limits, shrunk to fit `total` cells."""
    out = []
    for i, col in enumerate(columns):
        widest = max([cell_width(col.header), *(cell_width(row[i][0]) for row in rows)])
        width = max(col.min_width, widest)
        out.append(min(width, col.max_width) if col.max_width is not None else width)
    excess = sum(out) + len(GAP) * (len(out) - 1) - total
    for i in sorted(
        (i for i, c in enumerate(columns) if c.shrink), key=lambda i: columns[i].shrink
    ):
        floor = max(columns[i].floor, cell_width(columns[i].header))
        give = max(0, min(excess, out[i] - floor))
        out[i] -= give
        excess -= give
    return out


def layout(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], total: int
) -> tuple[list[int], list[int]]:
    """The indexes of the columns shown and their widths, fitting `total` cells if it can.

    Columns are left out in their `drop` order until the rest fits; when only the columns
    that are never dropped are left and they are still too wide, the terminal wraps the line
    rather than an id being cut.
    """
    shown = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: columns[i].drop)
    while True:
        cols = [columns[i] for i in shown]
        sizes = widths(cols, [[row[i] for i in shown] for row in rows], total)
        if sum(sizes) + len(GAP) * (len(sizes) - 1) <= total or not droppable:
            return shown, sizes
        shown.remove(droppable.pop(0))


def render(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], total: int, *, color: bool
) -> list[str]:
    """The header line and one line per row, at most `total` cells wide where it can be."""
    shown, sizes = layout(columns, rows, total)

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        for (text, style), size in zip((cells[i] for i in shown), sizes, strict=True):
            padded = fit(text, size)
            code = SGR.get(style) if color else None
            if code:  # the style covers the text, not the padding after it
                body = padded.rstrip(" ")
                padded = f"\x1b[{code}m{body}\x1b[0m" + " " * (len(padded) - len(body))
            parts.append(padded)
        return GAP.join(parts).rstrip(" ")

    header = line([(col.header, "bold") for col in columns])
    return [header, *(line(row) for row in rows)]
