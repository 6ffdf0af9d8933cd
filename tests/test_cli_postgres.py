"""The commands operators type, unchanged against a PostgreSQL store (`database = "postgresql://…"`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.plugin.testing import write_config

LOGD = Path(sys.executable).with_name("logd")


def test_sync_then_query_status_stats_show_and_follow(tmp_path: Path, pg_url: str) -> None:
    with FleetITSimulator(records=120) as sim:
        config = write_config(tmp_path, [sim.demo_source("fleet")], database=pg_url)
        synced = CliRunner().invoke(cli, ["sync", "-c", str(config)])
        assert synced.exit_code == 0, synced.output
        assert "120 new" in synced.output
        password = pg_url.split("@")[0].rsplit(":", 1)[-1] if "@" in pg_url else None

        query = CliRunner().invoke(cli, ["query", "-c", str(config), "--failed", "-f", "json"])
        assert query.exit_code == 0, query.output
        failed = json.loads(query.output)
        assert failed and {r["status"] for r in failed} == {"failure"}

        some = failed[0]["id"]
        show = CliRunner().invoke(cli, ["show", "-c", str(config), some])
        assert show.exit_code == 0 and some in show.output, show.output

        status = CliRunner().invoke(cli, ["status", "-c", str(config), "-f", "json"])
        assert status.exit_code == 0, status.output
        [row] = json.loads(status.output)
        assert (row["source"], row["entries"], row["state"]) == ("fleet", 120, "ok")

        stats = CliRunner().invoke(cli, ["stats", "-c", str(config), "--since", "3650d"])
        assert stats.exit_code == 0 and "fleet" in stats.output, stats.output

        # --follow: what a later sync stores appears, in a real process (it runs until killed).
        before = {
            r["native_id"]
            for r in json.loads(
                CliRunner()
                .invoke(cli, ["query", "-c", str(config), "-n", "1000", "-f", "json"])
                .output
            )
        }
        follow = subprocess.Popen(
            [str(LOGD), "query", "-c", str(config), "--follow", "-f", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[dict[str, object]] = []
        reader = threading.Thread(
            target=lambda: seen.extend(json.loads(line) for line in follow.stdout or ()),
            daemon=True,
        )
        reader.start()
        try:
            sim.add_records(2)
            again = CliRunner().invoke(cli, ["sync", "-c", str(config)])
            assert again.exit_code == 0 and "2 new" in again.output, again.output
            deadline = time.monotonic() + 20
            while len({r["native_id"] for r in seen} - before) < 2:
                assert time.monotonic() < deadline, f"follow printed {seen}"
                time.sleep(0.05)
        finally:
            follow.kill()
            _, err = follow.communicate(timeout=10)
        for text in (synced.output, query.output, status.output, err):
            assert not password or password not in text
