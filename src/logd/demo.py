"""`logd demo`: every installed simulator on 127.0.0.1, synced into a demo store and shown."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import tomli_w

from .config import load_settings
from .output import write_rows
from .plugins import load_plugins
from .simulator import Simulator
from .status import collect_status, write_status
from .store import Filters, Store
from .sync import run_sync


def start_simulators() -> dict[str, Simulator]:
    """Start one simulator per installed provider that ships one, keyed by provider name."""
    registry = load_plugins()
    running: dict[str, Simulator] = {}
    for name, cls in sorted(registry.simulators.items()):
        sim = cls()
        sim.start()
        running[name] = sim
    return running


def write_demo_config(directory: Path, sims: dict[str, Simulator]) -> Path:
    """A config pointing one source per simulator at it, with the store beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    # Simulators start afresh on new ports each run, so the demo store does too.
    for suffix in ("", "-wal", "-shm"):
        (directory / f"logd.db{suffix}").unlink(missing_ok=True)
    sources: list[dict[str, Any]] = [sim.demo_source(name) for name, sim in sims.items()]
    doc = {"database": str((directory / "logd.db").resolve()), "log_level": "warning",
           "sources": sources}  # fmt: skip
    path = directory / "config.toml"
    path.write_text(
        "# Written by `logd demo`: every source points at a simulator on 127.0.0.1.\n"
        + tomli_w.dumps(doc)
    )
    return path


def run_demo(directory: Path, *, keep_running: bool = False) -> None:
    """Run the whole demo and print what a new user should try next."""
    started = time.monotonic()
    sims = start_simulators()
    if not sims:
        raise click.ClickException("no installed plugin ships a simulator; install plugins/*")
    try:
        config = write_demo_config(directory, sims)
        click.secho(
            f"simulators: {', '.join(f'{n} {s.base_url}' for n, s in sims.items())}", bold=True
        )
        click.echo(f"config: {config}")
        settings = load_settings(config)
        run_sync(settings)
        with Store(settings.database) as store:
            click.secho("\nlogd status", bold=True)
            write_status(collect_status(store), "table", sys.stdout)
            click.secho("\nnewest failures", bold=True)
            rows = store.search(Filters(statuses=("failure",)), limit=10)
            write_rows(rows, "table", sys.stdout, color=sys.stdout.isatty())
        click.echo(f"\ndemo finished in {time.monotonic() - started:.1f}s. Try next:")
        logd = ".venv/bin/logd" if Path(".venv/bin/logd").exists() else "logd"
        click.echo(f'  {logd} query "timeout" --failed --db {settings.database}')
        click.echo(f"  {logd} status --db {settings.database}")
        click.echo(f"  {logd} show ID --db {settings.database}   (an id from the list above)")
        if keep_running:
            _keep_running(config, sims)
    finally:
        for sim in sims.values():
            sim.stop()


def _keep_running(config: Path, sims: dict[str, Simulator]) -> None:
    click.echo("\nkeeping the simulators producing and syncing every 10s; Ctrl-C stops")
    settings = load_settings(config)
    try:
        while True:
            time.sleep(10)
            for sim in sims.values():
                sim.tick()
            run_sync(settings, quiet=True)
    except KeyboardInterrupt:
        click.echo("stopped")
