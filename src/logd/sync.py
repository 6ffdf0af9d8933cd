"""`logd sync`: every enabled source once, to completion, with progress on a terminal."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import click

from .config import Settings
from .engine import Engine, SourceReport
from .errors import ConfigError
from .plugins import load_plugins
from .store import Store


def run_sync(
    settings: Settings, names: Sequence[str] = (), *, quiet: bool = False
) -> list[SourceReport]:
    """Poll the named sources (default: every enabled one) and print one line per source."""
    sources = [settings.source(n) for n in names] if names else [
        s for s in settings.sources if s.enabled
    ]
    if not sources:
        raise ConfigError("no enabled sources to sync", hint="add a [[sources]] table")
    registry = load_plugins()
    with Store(settings.database) as store:
        engine = Engine(settings, store, registry)
        live = sys.stderr.isatty() and not quiet
        display = _RichProgress(sources) if live else None
        with display or nullcontext():
            reports = engine.sync(sources, progress=display.update if display else None)
    for report in reports:
        click.echo(report.summary())
        if report.error:
            click.secho(f"error: {report.source}: {report.error}", err=True, fg="red")
    return reports


class _RichProgress:
    """A live line per source: pages, entries, rate; a spinner until it is done."""

    def __init__(self, sources: Sequence[Any]) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._lock = threading.Lock()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[source]}"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks = {
            s.name: self.progress.add_task("", total=None, source=s.name, line="starting")
            for s in sources
        }

    def __enter__(self) -> _RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, report: SourceReport) -> None:
        """Show a report's running totals."""
        rate = (report.new + report.updated) / report.duration if report.duration else 0.0
        line = (
            f"{report.pages} pages, {report.new} new, {report.updated} updated, "
            f"{rate:,.0f}/s"
        )
        with self._lock:
            self.progress.update(self.tasks[report.source], line=line)
            if report.done:
                self.progress.update(self.tasks[report.source], total=1, completed=1)
