"""Row 1: backfill. `logd sync` of FleetIT records into an empty store, against two baselines.

(a) the bare store: sqlite-utils `insert_all` of the same normalized rows into the same
    schema, FTS triggers included, with no HTTP and no Python of ours in the loop;
(b) the peer: a dlt `rest_api` pipeline into SQLite on the same simulator.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from common import Figure, count_entries
from logd_fleetit import FleetITSimulator
from logd_fleetit.provider import to_entry
from peer import dlt_python, run_dlt
from procs import logd
from serve import served

from logd.plugin.testing import write_config
from logd.store.sqlite.rows import prepare
from logd.store.sqlite.search import SLOTS, time_key
from logd.store.sqlite.store import Store

ROW = "1 backfill"
#: The columns `Prepared.columns` gives, in its order.
COLUMNS = (
    "provider",
    "timestamp",
    "status",
    "message",
    "error",
    "entity_type",
    "entity_id",
    "raw",
    "details",
    "search_text",
    "hash",
    "details_hash",
    "timestamp_observed",
)


def fetch_all(source: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record the simulator serves, walked page by page (outside any timing)."""
    headers = {"Authorization": f"Bearer {source['token']}", "Fleet-Id": source["fleet_id"]}
    records: list[dict[str, Any]] = []
    with httpx.Client(base_url=source["base_url"], headers=headers) as client:
        while True:
            page = client.get(
                "/v2/integrations/logs/", params={"limit": 100, "offset": len(records)}
            ).json()
            records += page["results"]
            if not page["next"]:
                return records


def normalized_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows logd stores for these records, column for column (keys made the same way)."""
    now = datetime.now(UTC).isoformat()
    rows, taken = [], {}
    for record in records:
        entry = to_entry(record)
        values = prepare(entry, "fleetit").columns(entry)
        start = time_key(entry.timestamp)
        key = taken.get(start, start - 1) + 1
        assert key < start + SLOTS
        taken[start] = key
        rows.append(
            {
                "id": key,
                "source": "fleet",
                "native_id": entry.native_id,
                **dict(zip(COLUMNS, values, strict=True)),
                "first_seen": now,
                "updated_at": now,
            }
        )
    return rows


def bare_store(rows: list[dict[str, Any]], directory: Path) -> float:
    """Seconds for sqlite-utils insert_all of `rows` into a fresh logd schema."""
    store = Store(directory / "bare.db")
    started = time.perf_counter()
    table = store.db["entries"]
    table.insert_all(rows)
    # The schema indexes text per batch, not by trigger (m004): sqlite-utils' own way to fill
    # an FTS table after inserting is populate_fts.
    table.populate_fts(["message", "error", "search_text"])
    took = time.perf_counter() - started
    store.close()
    return took


def run(quick: bool) -> list[Figure]:
    """Backfill throughput of `logd sync` next to the bare store and the dlt peer."""
    records = 5_000 if quick else 100_000
    figures: list[Figure] = []
    with (
        served(FleetITSimulator, "fleet", records=records) as source,
        tempfile.TemporaryDirectory() as tmp,
    ):
        directory = Path(tmp)
        rows = normalized_rows(fetch_all(source))
        bare = records / bare_store(rows, directory)

        config = write_config(directory / "logd", [source])
        ran = logd("sync", "--quiet", "-c", str(config))
        if ran.returncode != 0:
            raise RuntimeError(f"logd sync failed: {ran.stderr.strip()[-500:]}")
        stored = count_entries(directory / "logd" / "logd.db")
        rate = stored / ran.seconds
        figures.append(
            Figure(
                ROW,
                f"logd sync, {records:,} FleetIT records (whole process)",
                rate,
                "entries/s",
                "(a) sqlite-utils insert_all, same rows and schema",
                bare,
                "≥ 60 % of (a)",
                stored == records and rate >= 0.6 * bare,
                f"{rate / bare:.0%} of (a); {stored:,} stored in {ran.seconds:.1f} s",
            )
        )
        if dlt_python() is None:
            figures.append(
                Figure(
                    ROW,
                    "vs dlt rest_api → SQLite",
                    None,
                    "entries/s",
                    "(b) dlt",
                    None,
                    "≥ 2.5 × (b)",
                    None,
                    "dlt venv missing: `make bench` installs it",
                )
            )
        else:
            peer = run_dlt(source, directory / "dlt.db")
            # Whole process against whole process, as a user runs either: `logd sync` pays
            # its own start-up, so dlt's (importing dlt, building the pipeline) counts too.
            peer_rate = peer["rows"] / peer["process_seconds"]
            in_run = peer["rows"] / peer["seconds"]
            figures.append(
                Figure(
                    ROW,
                    "logd sync vs dlt rest_api → SQLite (whole processes)",
                    rate,
                    "entries/s",
                    f"(b) dlt {peer['dlt_version']}, {peer['rows']:,} rows",
                    peer_rate,
                    "≥ 2.5 × (b)",
                    peer["rows"] == records and rate >= 2.5 * peer_rate,
                    f"{rate / peer_rate:.1f} × (b); dlt's pipeline.run alone: {in_run:,.0f}/s "
                    f"({rate / in_run:.1f} ×)",
                )
            )
    return figures
