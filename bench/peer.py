"""Row 1's peer, dlt's `rest_api` source → SQLite, run from its own virtualenv.

`make bench` installs dlt into bench/.venv-dlt (never into logd's venv); this module runs
bench/dlt_peer/peer.py with that venv's python against a served simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-dlt"
SCRIPT = HERE / "dlt_peer" / "peer.py"


def dlt_python() -> Path | None:
    """The dlt venv's python, or None when `make bench` has not installed it (no stamp)."""
    python = VENV / "bin" / "python"
    if python.exists() and (VENV / ".installed").exists():
        return python
    return None


def run_dlt(source: dict[str, Any], db: Path, timeout: float = 3600) -> dict[str, Any]:
    """Load `source` (a served simulator's `[[sources]]` table) into `db` with dlt.

    Returns peer.py's figures, `{"rows", "seconds", "dlt_version"}` (`seconds`: its
    `pipeline.run` alone), plus `process_seconds`: the whole process, start to exit, measured
    as row 1 measures `logd sync`. dlt's state lives in a temporary directory that is removed
    afterwards; `db` is left for the caller.
    """
    python = dlt_python()
    if python is None:
        raise RuntimeError("dlt peer not installed: run `make bench/.venv-dlt/.installed`")
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    with tempfile.TemporaryDirectory(prefix="logd-bench-dlt-") as state:
        cmd = [
            str(python),
            str(SCRIPT),
            "--base-url",
            source["base_url"],
            "--token",
            source["token"],
            "--fleet-id",
            str(source["fleet_id"]),
            "--pipelines-dir",
            state,
            "--db",
            str(db),
        ]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=state, timeout=timeout
        )
        process_seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"dlt peer failed (exit {done.returncode}):\n{tail}")
    try:
        figures: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise RuntimeError(f"dlt peer printed no JSON figures: {lines[-1]!r}") from e
    figures["process_seconds"] = process_seconds
    return figures
