"""Plain text tables for `logd query`: the look of a borderless rich table, without rich.

`logd query` prints its table once and exits; importing rich and laying out its table took
about as long as the rest of the command together. Here cells are one line each: too long a
cell is cut with `…`; when the terminal is too narrow, the columns that may shrink give up
width, in their `shrink` order, down to their `floor`. Cell text is printed as given, never
read as markup.
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
    floor: int = 1  # the narrowest it shrinks to


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
        give = max(0, min(excess, out[i] - columns[i].floor))
        out[i] -= give
        excess -= give
    return out  # still too wide when every column is at its floor: the terminal wraps


def render(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], total: int, *, color: bool
) -> list[str]:
    """The header line and one line per row, at most `total` cells wide where it can be."""
    sizes = widths(columns, rows, total)

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        for (text, style), size in zip(cells, sizes, strict=True):
            padded = fit(text, size)
            code = SGR.get(style) if color else None
            if code:  # the style covers the text, not the padding after it
                body = padded.rstrip(" ")
                padded = f"\x1b[{code}m{body}\x1b[0m" + " " * (len(padded) - len(body))
            parts.append(padded)
        return GAP.join(parts).rstrip(" ")

    header = line([(col.header, "bold") for col in columns])
    return [header, *(line(row) for row in rows)]
