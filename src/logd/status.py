"""`logd status`: what each source last did, from the store alone."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .outbox import outbox_counts
from .output import write_records
from .store import Store


def collect_status(store: Store, config: Path | None = None) -> list[dict[str, Any]]:
    """Per source: state, last poll, last success, last error, counts, cursor."""
    rows = store.source_stats()
    deliveries = outbox_counts(store)
    # A running daemon records when it polls each source next (empty when none runs).
    schedule = store.schedule()
    known = {row["source"] for row in rows}
    for source in sorted(set(schedule) - known):  # scheduled, not polled yet
        rows.append(_never_polled(source))
    rows.sort(key=lambda r: r["source"])
    for row in rows:
        planned = schedule.get(row["source"])
        row["next_run"] = planned["next_run"] if planned else None
        row["interval"] = planned["interval"] if planned else None
        row["consecutive_failures"] = planned["consecutive_failures"] if planned else 0
        # Only stores with webhook deliveries get the key, so status without webhooks is as before.
        if deliveries:
            counts = deliveries.get(row["source"], {})
            row["webhooks"] = {"pending": counts.get("pending", 0), "dead": counts.get("dead", 0)}
        if row["last_error_at"] and (
            not row["last_success"] or row["last_error_at"] > row["last_success"]
        ):
            row["state"] = "failing"
        elif row["last_success"]:
            row["state"] = "ok"
        else:
            row["state"] = "never polled"
    return rows


def _never_polled(source: str) -> dict[str, Any]:
    """A `source_stats()` row for a source with nothing stored yet."""
    empty = dict.fromkeys(("last_poll", "last_success", "last_error", "last_error_at", "cursor"))
    return {"source": source, "entries": 0, "failures": 0, "pending": 0, **empty}


def short_time(ts: str | None) -> str | None:
    """Local time of day for today, date and time otherwise."""
    if not ts:
        return None
    when = datetime.fromisoformat(ts).astimezone()
    fmt = "%H:%M:%S" if when.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M"
    return when.strftime(fmt)


def write_status(rows: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Status as a table for people or JSON for scripts."""
    if fmt == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
        return
    # The table is for a terminal: short times, no cursor (it is in --format json).
    scheduled = any(row.get("next_run") for row in rows)
    table = []
    for row in rows:
        line: dict[str, Any] = {
            "source": row["source"],
            "state": row["state"],
            "last success": short_time(row["last_success"]),
        }
        if scheduled:
            line["next run"] = short_time(row.get("next_run"))
        line.update(entries=row["entries"], failures=row["failures"], pending=row["pending"])
        if "webhooks" in row:
            line["hooks pending/dead"] = f"{row['webhooks']['pending']}/{row['webhooks']['dead']}"
        line["last error"] = (row["last_error"] or "")[:160] or None
        table.append(line)
    write_records(table, "table", out)
