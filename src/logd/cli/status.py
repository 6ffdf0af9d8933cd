"""`logd status`: what each source last did, from the store alone."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from logd.cli.output import write_records
from logd.cli.table import Column
from logd.store.interface import Store
from logd.timeparse import short_time, zone_name


def collect_status(store: Store, config: Path | None = None) -> list[dict[str, Any]]:
    """Per source: state, last poll, last success, last error, counts, cursor, current wait."""
    rows = store.source_stats()
    deliveries = store.outbox_counts("source")
    # A poll without an end is running while its process lives; a killed one's row is not.
    running = {
        source: started
        for source, (started, pid) in store.unfinished_runs().items()
        if pid is not None and process_alive(pid)
    }
    # A running poll held back (rate budget, Retry-After) notes until when, on its row.
    waits = store.run_waits()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # A running daemon records when it polls each source next (empty when none runs).
    schedule = store.schedule()
    known = {row["source"] for row in rows}
    for source in sorted((set(schedule) | set(running)) - known):  # not polled to an end yet
        rows.append(_never_polled(source))
    rows.sort(key=lambda r: r["source"])
    # Daemons sharing a store: the live lease on a source names the daemon polling it.
    held = {
        lease.name.removeprefix("source:"): lease
        for lease in store.leases()
        if lease.name.startswith("source:") and lease.expires_at.isoformat() > now
    }
    for row in rows:
        lease = held.get(row["source"])
        row["held_by"] = lease.holder if lease else None
        row["lease_until"] = (
            lease.expires_at.astimezone(UTC).isoformat(timespec="seconds") if lease else None
        )
        planned = schedule.get(row["source"])
        row["next_run"] = planned["next_run"] if planned else None
        row["interval"] = planned["interval"] if planned else None
        row["consecutive_failures"] = planned["consecutive_failures"] if planned else 0
        # Only stores with webhook deliveries get the key, so status without webhooks is as before.
        if deliveries:
            counts = deliveries.get(row["source"], {})
            row["webhooks"] = {"pending": counts.get("pending", 0), "dead": counts.get("dead", 0)}
        row["polling_since"] = running.get(row["source"])
        # A note whose time has passed is a wait that is over: the poll went on since.
        waiting, until = waits.get(row["source"], (None, None))
        if not row["polling_since"] or until is None or until <= now:
            waiting = until = None
        row["waiting"], row["waiting_until"] = waiting, until
        if row["polling_since"]:
            row["state"] = "polling"
        elif row["last_error_at"] and (
            not row["last_success"] or row["last_error_at"] > row["last_success"]
        ):
            row["state"] = "failing"
        elif row["last_success"]:
            row["state"] = "ok"
        else:
            row["state"] = "never polled"
    return rows


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (on this host: the store is a local file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the daemon runs as another user
        return True
    except OSError:
        return False
    return True


def _state(row: dict[str, Any], *, local: bool) -> str:
    """The state column: `polling (rate limited until 13:05:02)`, `polling since …`, `ok`, …"""
    if row.get("waiting_until"):
        return f"polling ({row['waiting']} until {short_time(row['waiting_until'], local=local)})"
    if row.get("polling_since"):
        return f"polling since {short_time(row['polling_since'], local=local)}"
    return str(row["state"])


def _never_polled(source: str) -> dict[str, Any]:
    """A `source_stats()` row for a source with nothing stored yet."""
    empty = dict.fromkeys(("last_poll", "last_success", "last_error", "last_error_at", "cursor"))
    return {"source": source, "entries": 0, "failures": 0, "pending": 0, "invalid": 0, **empty}


def write_status(rows: list[dict[str, Any]], fmt: str, out: TextIO, *, local: bool = False) -> None:
    """Status as a table for people (one line a source) or JSON for scripts.

    The table shows times in UTC (`local`: local time) with the zone in the header, cuts the
    last error to the line and prints the errors of failing sources whole below it. At 80
    columns the less telling columns are left out first: pending, webhooks, the daemon
    holding the source (daemons sharing a store), next run, entries, last success.
    """
    if fmt == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
        return
    # The table is for a terminal: short times, no cursor (it is in --format json).
    zone = zone_name(local=local)
    scheduled = any(row.get("next_run") for row in rows)
    erred = any(row["last_error"] for row in rows)  # a column of dashes is left out
    # Quarantined records get a column only when there are some, as webhooks do.
    quarantined = any(row.get("invalid") for row in rows)
    table = []
    errors = []
    for row in rows:
        line: dict[str, Any] = {
            "source": row["source"],
            "state": _state(row, local=local),
            f"last success ({zone})": short_time(row["last_success"], local=local),
        }
        if scheduled:
            line[f"next run ({zone})"] = short_time(row.get("next_run"), local=local)
        line.update(entries=row["entries"], failures=row["failures"], pending=row["pending"])
        if quarantined:
            line["invalid"] = row.get("invalid", 0)
        if "webhooks" in row:
            line["hooks pending/dead"] = f"{row['webhooks']['pending']}/{row['webhooks']['dead']}"
        if any(r.get("held_by") for r in rows):
            line["held by"] = row.get("held_by")
        if erred:
            line["last error"] = row["last_error"] or None
        table.append(line)
        if row["state"] == "failing" and row["last_error"]:
            errors.append((row["source"], row["last_error"]))
    columns = [
        Column("pending", drop=1),
        Column("hooks pending/dead", drop=2),
        Column("held by", drop=3),
        Column(f"next run ({zone})", drop=4),
        Column("entries", drop=5),
        Column(f"last success ({zone})", drop=6),
        Column("last error", shrink=1, floor=10, drop=7),
    ]
    write_records(table, "table", out, columns=columns, notes=errors)
