"""`logd demo`: every installed simulator synced, deliveries verified, next steps printed."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from logd.cli.main import cli
from logd.plugin.manager import load_plugins
from logd.store.sqlite.store import Store


def test_demo_syncs_every_simulator_and_verifies_deliveries(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    simulated = set(load_plugins().simulators)
    assert {"fleetit", "pegasus", "elasticpath", "maestra", "akinon"} <= simulated
    for name in simulated:
        assert f"{name}: " in result.output and f"error: {name}" not in result.output
    assert "signature verified" in result.output and "INVALID" not in result.output
    assert "newest failures" in result.output and 'query "timeout" --failed' in result.output
    assert "logd.db and config.toml are replaced on every run" in result.output  # never silent
    # Elastic Path records without a vendor time are the newest: marked as seen, not dated.
    assert "~ time first seen by logd: the vendor gives none" in result.output
    with Store(tmp_path / "demo" / "logd.db", create=False) as store:
        sources = {row["source"] for row in store.source_stats() if row["entries"]}
        pending = store.db.execute(
            "SELECT count(*) FROM webhook_outbox WHERE state != 'done'"
        ).fetchone()[0]
    assert sources == simulated and pending == 0

    # A second run starts from a fresh store: same counts, nothing doubled.
    again = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo")])
    assert again.exit_code == 0 and " 0 new" not in again.output
