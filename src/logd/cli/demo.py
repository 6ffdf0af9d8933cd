"""`logd demo`: every installed simulator on 127.0.0.1, synced into a demo store and shown."""

from __future__ import annotations

import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import tomli_w

from logd.cli.output import write_rows
from logd.cli.status import collect_status, write_status
from logd.cli.sync import run_sync
from logd.config.settings import load_settings
from logd.plugin.manager import load_plugins
from logd.plugin.simulator import Simulator
from logd.store import open_store
from logd.store.interface import Filters


def start_simulators() -> dict[str, Simulator]:
    """Start one simulator per installed provider that ships one, keyed by provider name."""
    registry = load_plugins()
    running: dict[str, Simulator] = {}
    for name, cls in sorted(registry.simulators.items()):
        sim = cls()
        sim.start()
        running[name] = sim
    return running


DEMO_SECRET = "demo-webhook-secret"


def write_demo_config(
    directory: Path, sims: dict[str, Simulator], receiver_url: str | None = None
) -> Path:
    """A config pointing one source per simulator at it, with the store beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    # Simulators start afresh on new ports each run, so the demo store does too.
    for suffix in ("", "-wal", "-shm"):
        (directory / f"logd.db{suffix}").unlink(missing_ok=True)
    # Short intervals so that `--keep-running` shows the daemon picking up new records.
    sources: list[dict[str, Any]] = [
        {**sim.demo_source(name), "interval": "10s"} for name, sim in sims.items()
    ]
    doc: dict[str, Any] = {
        "database": str((directory / "logd.db").resolve()),
        "log_level": "warning",
        "sources": sources,
    }
    if receiver_url:
        # A first sync is a backfill, whose failures webhooks do not send by default; the
        # demo opts in so that there are deliveries to verify.
        doc["webhooks"] = [
            {
                "name": "demo",
                "url": receiver_url,
                "secret": DEMO_SECRET,
                "max_entries": 100,
                "alert_backfill": True,
            }
        ]
    path = directory / "config.toml"
    path.write_text(
        "# Written by `logd demo`: every source points at a simulator on 127.0.0.1.\n"
        + tomli_w.dumps(doc)
    )
    path.chmod(0o600)  # the simulators' credentials are literal secrets
    return path


def run_demo(directory: Path, *, keep_running: bool = False) -> None:
    """Run the whole demo and print what a new user should try next."""
    from logd.delivery.receiver import Received, Receiver

    started = time.monotonic()
    sims = start_simulators()
    if not sims:
        raise click.ClickException("no installed plugin ships a simulator; install plugins/*")
    received: list[Received] = []

    def show_delivery(delivery: Received) -> None:
        received.append(delivery)

    receiver = Receiver(DEMO_SECRET, on_delivery=show_delivery).start()
    try:
        config = write_demo_config(directory, sims, receiver.url)
        click.secho("simulated APIs on 127.0.0.1:", bold=True)
        for name, sim in sims.items():
            click.echo(f"  {name:<12} {sim.base_url}")
        click.echo(f"webhook receiver: {receiver.url} (verifies every signature)")
        click.echo(f"config: {config}")
        click.echo(
            f"note: {directory}/ belongs to the demo: its logd.db and config.toml are "
            "replaced on every run\n"
        )
        settings = load_settings(config)
        run_sync(settings)
        _print_deliveries(received)
        with closing(open_store(settings.database)) as store:
            click.secho("\nlogd status", bold=True)
            write_status(collect_status(store), "table", sys.stdout)
            click.secho("\nnewest failures", bold=True)
            rows = store.search(Filters(statuses=("failure",)), limit=10)
            write_rows(rows, "table", sys.stdout, color=sys.stdout.isatty())
        click.echo(f"\ndemo finished in {time.monotonic() - started:.1f}s. Try next:")
        logd = ".venv/bin/logd" if Path(".venv/bin/logd").exists() else "logd"
        db = settings.database
        click.echo(f'  {logd} query "timeout" --failed --db {db}')
        click.echo(f"  {logd} stats --db {db}")
        click.echo(f"  {logd} show {rows[0].id if rows else 'SOURCE:ID'} --db {db}")
        if keep_running:
            _keep_running(config, sims, received)
    finally:
        receiver.close()
        for sim in sims.values():
            sim.stop()


def _print_deliveries(received: list[Any]) -> None:
    if not received:
        return
    click.secho("\nwebhook deliveries received", bold=True)
    for delivery in received:
        body = delivery.json()
        verdict = "signature verified" if delivery.verified else "SIGNATURE INVALID"
        click.echo(
            f"  {delivery.delivery_id}  {body['source']:<12} {body['count']:>4} failures  "
            f"({verdict})"
        )
    received.clear()


def _keep_running(config: Path, sims: dict[str, Simulator], received: list[Any]) -> None:
    """Run the daemon in this process while the simulators keep producing; Ctrl-C stops."""
    import threading

    from logd.daemon.service import Daemon

    click.secho(
        "\nthe daemon now polls every 10s while the simulators produce records; Ctrl-C stops",
        bold=True,
    )
    stop = threading.Event()

    def produce() -> None:
        while not stop.wait(5):
            for sim in sims.values():
                sim.tick()
            _print_deliveries(received)

    producer = threading.Thread(target=produce, name="demo-producer", daemon=True)
    producer.start()
    try:
        Daemon(config, log_level="info").run()
    finally:
        stop.set()
