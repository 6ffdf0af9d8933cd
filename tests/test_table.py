"""The plain table `logd query` prints: widths, cutting, colour, and text taken literally."""

from __future__ import annotations

import io

import pytest

from logd.cli.output import write_entry, write_records, write_table
from logd.cli.table import Column, cell_width, fit, render
from logd.store.interface import Row


def row(entry_id: str, status: str, message: str, error: str | None = None) -> Row:
    source, _, native = entry_id.partition(":")
    return Row(
        entry_id,
        source,
        "p",
        native,
        "2024-05-01T10:00:00+00:00",
        status,
        message,
        error,
        None,
        None,
        None,
        None,
    )


def table(rows: list[Row], width: int, monkeypatch: pytest.MonkeyPatch, color: bool = False) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    out = io.StringIO()
    write_table(rows, out, color=color)
    return out.getvalue()


def test_columns_line_up_and_vendor_text_is_never_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    text = table(
        [
            row("fleet:1", "failure", "[ERROR] said [/path] \x1b[31mred", "Timeout"),
            row("shop:22", "success", "Done"),
        ],
        120,
        monkeypatch,
    )
    header, first, second = text.splitlines()
    assert header.split() == ["time", "(UTC)", "id", "status", "message"]
    assert first.index("failure") == second.index("success") == header.index("status")
    assert first.endswith("[ERROR] said [/path] [31mred: Timeout")  # no ESC reaches a terminal
    assert "\x1b" not in text and not any(line.endswith(" ") for line in text.splitlines())


def test_a_narrow_terminal_cuts_the_message_then_drops_columns_never_the_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_id = "a-very-long-source-name:1234567890"
    lines = table([row(long_id, "pending", "word " * 40)], 80, monkeypatch).splitlines()
    assert all(cell_width(line) <= 80 for line in lines)
    assert lines[1] == f"2024-05-01 10:00:00  {long_id}  pending  word word wor…"
    # Narrower: the time goes before the id is cut, then the message, then the status.
    assert table([row(long_id, "pending", "word " * 40)], 60, monkeypatch).splitlines()[1] == (
        f"{long_id}  pending  word word word…"
    )
    assert table([row(long_id, "pending", "w " * 9)], 45, monkeypatch).splitlines() == [
        "id                                  status",
        f"{long_id}  pending",
    ]
    # Too narrow even for the id: the id is printed whole and the terminal wraps it.
    assert table([row(long_id, "pending", "m")], 20, monkeypatch).splitlines()[1] == long_id
    wide = table([row(long_id, "pending", "word " * 40)], 200, monkeypatch).splitlines()
    assert f"{long_id}  pending  word word word" in wide[1]


def test_record_tables_keep_ids_and_headers_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    dlv = "dlv_" + "a" * 32
    records = [{"delivery": dlv, "state": "dead", "hooks pending/dead": "0/1", "last error": "x"}]
    error = "HTTP 500 from https://hooks.example/in: " + "the receiver said no " * 6
    columns = [Column("hooks pending/dead", drop=1), Column("last error", shrink=1, floor=10)]
    out = io.StringIO()
    write_records(records, "table", out, columns=columns)
    assert out.getvalue().splitlines() == [
        "delivery                              state  hooks pending/dead  last error",
        f"{dlv}  dead   0/1                 x",
    ]
    records[0]["last error"] = error
    out = io.StringIO()
    write_records(records, "table", out, columns=columns, notes=[(dlv, error)])
    header, line, blank, *notes = out.getvalue().splitlines()
    assert header.split() == ["delivery", "state", "hooks", "pending/dead", "last", "error"]
    assert line.startswith(f"{dlv}  dead   0/1                 HTTP 500 ") and line.endswith("…")
    assert all(cell_width(text) <= 80 for text in [header, line, *notes]) and blank == ""
    assert " ".join(n.strip() for n in notes) == f"{dlv}: {error.strip()}"  # whole, wrapped


def test_colour_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [row("fleet:1", "failure", "Failed")]
    assert "\x1b[1;31mfailure\x1b[0m" in table(rows, 120, monkeypatch, color=True)
    monkeypatch.setenv("TERM", "dumb")
    assert "\x1b" not in table(rows, 120, monkeypatch, color=True)
    assert table([], 120, monkeypatch) == "no matching entries\n"


def test_wide_characters_take_two_cells() -> None:
    assert cell_width("日本") == 4 and cell_width("e\u0301") == 1
    assert fit("日本語", 5) == "日本…" and fit("ab", 4) == "ab  "
    lines = render(
        [Column("h"), Column("x", shrink=1)], [[("日本", ""), ("y", "")]], 80, color=False
    )
    assert lines == ["h     x", "日本  y"]


def test_status_and_show_print_vendor_brackets_as_text() -> None:
    # rich would read "[/api/v2]" as a closing tag and raise MarkupError.
    out = io.StringIO()
    write_records([{"source": "shop", "last_error": "HTTP 500 at [/api/v2] [bold]x"}], "table", out)
    assert "HTTP 500 at [/api/v2] [bold]x" in out.getvalue()
    row = Row(
        id="shop:1", source="shop", provider="p", native_id="1",
        timestamp="2026-11-23T10:00:00.000000+00:00", status="failure",
        message="PUT [/orders] -> 500", error="[/]", entity_type=None, entity_id=None,
        raw={"path": "[/x]"}, details=None,
    )  # fmt: skip
    out = io.StringIO()
    write_entry(row, out)
    assert "PUT [/orders] -> 500" in out.getvalue() and "[/]" in out.getvalue()
