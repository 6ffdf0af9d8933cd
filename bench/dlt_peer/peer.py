"""Benchmark row 1's peer: dlt's `rest_api` source → SQLite, over the FleetIT simulator.

Runs with bench/.venv-dlt's python (never logd's: it must not import logd), configured as dlt's
docs recommend for an offset-paged REST API, and prints one JSON line:
`{"rows": …, "seconds": …, "dlt_version": "…"}`.

    peer.py --base-url URL --token T --fleet-id F --pipelines-dir DIR --db PATH

All of dlt's state (pipelines dir, project dir with its `.dlt` settings, data dir) lives under
`--pipelines-dir`, so nothing reads or writes ~/.dlt, and telemetry is off so nothing phones home.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

TABLE = "integration_logs"


def isolate(root: Path) -> None:
    """Point every dlt directory under `root` and turn telemetry off, before dlt is imported."""
    for var, sub in (("DLT_PROJECT_DIR", "project"), ("DLT_DATA_DIR", "data")):
        path = root / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    os.environ["DLT_LOCAL_DIR"] = os.environ["DLT_PROJECT_DIR"]
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--fleet-id", required=True)
    parser.add_argument("--pipelines-dir", required=True, type=Path)
    parser.add_argument("--db", required=True, type=Path)
    args = parser.parse_args(argv)

    root: Path = args.pipelines_dir.resolve()
    isolate(root)
    import dlt
    from dlt.sources.rest_api import RESTAPIConfig, rest_api_source

    # The REST API source as https://dlthub.com/docs/dlt-ecosystem/verified-sources/rest_api/basic
    # lays it out: the `offset` paginator ("The pagination is based on an offset parameter, with
    # the total items count either in the response body…": `limit`, `total_path`), bearer auth,
    # extra headers in `client.headers`, and an explicit `data_selector` for the `results` list.
    #
    # write_disposition "append": https://dlthub.com/docs/general-usage/incremental-loading
    # ("Choosing a write disposition") asks "Is my data stateful or stateless?" — "Stateless data
    # cannot change - for example, a recorded event … Because stateless data does not need to be
    # updated, we can just append it." An integration log record is such an event, and this is
    # an initial load into an empty table. `id` is still declared as the primary key (a schema
    # hint); "merge" would only add a staging dataset and a delete-insert per load for records
    # that never change.
    config: RESTAPIConfig = {
        "client": {
            "base_url": args.base_url.rstrip("/") + "/",
            "auth": {"type": "bearer", "token": args.token},
            "headers": {"Fleet-Id": args.fleet_id},
            "paginator": {"type": "offset", "limit": 100, "total_path": "count"},
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "append"},
        "resources": [
            {
                "name": TABLE,
                "endpoint": {"path": "v2/integrations/logs/", "data_selector": "results"},
            },
        ],
    }

    db: Path = args.db.resolve()
    pipeline = dlt.pipeline(
        pipeline_name="fleetit_bench",
        pipelines_dir=str(root / "pipelines"),
        # SQLite keeps dataset "main" in the database file itself; any other name is ATTACHed
        # from a second file beside it (docs: destinations/sqlalchemy, "Notes on SQLite").
        destination=dlt.destinations.sqlalchemy(credentials=f"sqlite:///{db}"),
        dataset_name="main",
    )
    started = time.perf_counter()
    pipeline.run(rest_api_source(config))  # extract, normalize and load
    seconds = time.perf_counter() - started

    conn = sqlite3.connect(db)
    try:
        (rows,) = conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()
    finally:
        conn.close()
    print(json.dumps({"rows": rows, "seconds": round(seconds, 3), "dlt_version": dlt.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
