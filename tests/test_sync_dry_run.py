"""`logd sync --dry-run`: any provider's first batch, mapped and printed, nothing stored."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.plugin.testing import write_config


def test_dry_run_prints_the_first_entries_and_stores_nothing(tmp_path: Path) -> None:
    with FleetITSimulator(records=250) as sim:
        config = write_config(tmp_path, [sim.demo_source("fleet")])
        result = CliRunner().invoke(cli, ["sync", "--dry-run", "-s", "fleet", "-c", str(config)])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].startswith("fleet: first batch of 100 entries after 1 request ")
        assert len(lines) == 11
        first = sim._view(sim.fleets["1"], sim.requests[0])[0]
        native_id, when, status, *message = lines[1].split()
        assert native_id == str(first["id"])
        assert status == ("success" if first["success"] else "failure")
        assert " ".join(message) == first["response"]["message"]
        assert when.endswith("Z")
        assert len(sim.requests) == 1  # one page, not the walk
    assert not (tmp_path / "logd.db").exists()


def test_dry_run_failure_is_one_masked_line(tmp_path: Path) -> None:
    with FleetITSimulator(records=5) as sim:
        sim.fail_next(403, body='{"detail": "token fleet-demo-token is not allowed"}')
        config = write_config(tmp_path, [sim.demo_source("fleet")])
        result = CliRunner().invoke(cli, ["sync", "--dry-run", "-c", str(config)])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: fleet: GET http://127.0.0.1:")
    assert line.endswith("-> HTTP 403: token *** is not allowed")
    assert not (tmp_path / "logd.db").exists()


def test_dry_run_shows_why_records_could_not_be_mapped(tmp_path: Path) -> None:
    with FleetITSimulator(records=3) as sim:
        sim.fleets["1"].records[1]["timestamp"] = "soon"
        config = write_config(tmp_path, [sim.demo_source("fleet")])
        result = CliRunner().invoke(cli, ["sync", "--dry-run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("fleet: first batch of 2 entries")
    assert lines[3] == "fleet: 1 records could not be mapped, e.g.:"
    assert lines[4].startswith(f"  {sim.fleets['1'].records[1]['id']}  invalid  ")
    assert "soon" in lines[4]
