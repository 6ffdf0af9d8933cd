"""`logd sync`: every enabled source once, to completion, with progress on a terminal."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from logd import logging_setup as logs
from logd import redact
from logd.config.settings import Settings
from logd.delivery.wiring import Deliveries, wire_deliveries
from logd.engine import heap
from logd.engine.poller import Engine, SourceReport, mask
from logd.errors import ConfigError, LogdError
from logd.plugin.http import RetryPolicy, SourceClient
from logd.plugin.manager import load_plugins
from logd.plugin.provider import PollContext
from logd.store import open_store

if TYPE_CHECKING:
    from rich.progress import Task
    from rich.text import Text


def run_sync(
    settings: Settings, names: Sequence[str] = (), *, quiet: bool = False
) -> list[SourceReport]:
    """Poll the named sources (default: every enabled one) and print one line per source."""
    sources = (
        [settings.source(n) for n in names] if names else [s for s in settings.sources if s.enabled]
    )
    if not sources:
        raise ConfigError("no enabled sources to sync", hint="add a [[sources]] table")
    registry = load_plugins(providers={s.provider for s in sources})
    heap.settle()  # start-up is over: what follows allocates per record (heap.py)
    with closing(open_store(settings.database)) as store:
        stop = threading.Event()
        deliveries = wire_deliveries(settings, store, registry)
        engine = Engine(
            settings,
            store,
            registry,
            sleep=_interruptible(stop),
            batch_hooks=deliveries.hooks,
        )
        live = sys.stderr.isatty() and not quiet
        display = _RichProgress(sources) if live else None
        try:
            with ExitStack() as stack:
                if display:
                    stack.enter_context(display)
                    # Log lines printed past the live display break its redraw (it repeated
                    # its lines and the log lines were drawn over): print them through it.
                    stack.enter_context(logs.through(display.progress.console))
                reports = engine.sync(
                    sources, progress=display.update if display else None, stop=stop
                )
        except KeyboardInterrupt:
            raise LogdError(
                "interrupted: every batch committed so far is kept; "
                "the next sync continues from there"
            ) from None
        with deliveries:
            webhook_lines = _deliver(deliveries)
    for report in reports:  # the counts on stdout, an error once, on stderr
        click.echo(dataclasses.replace(report, error=None).summary())
        if report.error:
            click.secho(f"error: {report.source}: {report.error}", err=True, fg="red")
    for line in webhook_lines:
        click.echo(line)
    return reports


def show_first_batch(settings: Settings, names: Sequence[str] = (), *, first: int = 10) -> bool:
    """Print how each source's first batch maps (`sync --dry-run`); False when one failed.

    The provider polls as on a first sync (no cursor, nothing known) until its first batch;
    nothing is stored and no cursor moves, so a description can be tried in seconds.
    """
    sources = (
        [settings.source(n) for n in names] if names else [s for s in settings.sources if s.enabled]
    )
    registry = load_plugins(providers={s.provider for s in sources})
    ok = True
    for src in sources:
        provider = registry.provider(src.provider)()
        secrets = provider.secrets(src.options)  # one list: it grows when the provider logs in
        redact.register(*secrets)
        client = SourceClient(
            src.name,
            src.options.base_url,
            timeout=src.timeout,
            retry=RetryPolicy(attempts=src.retry.attempts, max_wait=src.retry.max_wait),
            max_response_bytes=int(src.max_response_size),
            download_timeout=src.download_timeout,
            secrets=secrets,
        )
        ctx: PollContext[Any] = PollContext(
            source=src.name,
            options=src.options,
            client=client,
            cursor=None,
            log=logging.getLogger(f"logd.source.{src.name}"),
            secrets=secrets,
        )
        polling = provider.poll(ctx)
        try:
            batch = next(polling, None)
        except Exception as exc:  # a provider bug too: one line, as the engine records it
            text = str(exc) if isinstance(exc, LogdError) else f"internal error: {exc!r}"
            click.secho(f"error: {src.name}: {mask(text, ctx.secrets)}", err=True, fg="red")
            ok = False
            continue
        finally:
            stop = getattr(polling, "close", None)  # a generator's finally blocks run now
            if stop is not None:
                stop()
            client.close()
        entries = batch.entries if batch else []
        asked = f"{client.requests} request" + ("" if client.requests == 1 else "s")
        click.echo(
            f"{src.name}: first batch of {len(entries)} entries after {asked} "
            f"(dry run: nothing stored); the first {min(first, len(entries))}:"
        )
        for entry in entries[:first]:
            when = entry.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = " ".join(entry.message.split())[:60]
            click.echo(f"  {entry.native_id}  {when}  {entry.status.value:<7}  {message}")
        invalid = batch.invalid if batch else []
        if invalid:  # what a description gets wrong shows here first
            click.echo(f"{src.name}: {len(invalid)} records could not be mapped, e.g.:")
        for bad in invalid[:first]:
            click.echo(f"  {bad.native_id or '(no id)'}  invalid  {' '.join(bad.reason.split())}")
    return ok


def _deliver(deliveries: Deliveries) -> list[str]:
    """Deliver what is due before exiting; one line per sink (never its URL or secret)."""
    lines = _export(deliveries)
    if deliveries.deliverer is None:
        return lines
    stats = deliveries.deliverer.deliver_due()
    pending = deliveries.pending()
    for sink in deliveries.sinks:
        done = stats.by_sink.get(sink.name, {})
        line = (
            f"{sink.kind} {sink.name}: {done.get('delivered', 0)} delivered, "
            f"{done.get('retrying', 0)} retrying, {done.get('dead', 0)} dead"
        )
        waiting = pending.get(sink.name, 0)
        lines.append(f"{line} ({waiting} pending)" if waiting else line)
    return lines


def _export(deliveries: Deliveries) -> list[str]:
    """One bounded round of each export (what was stored, up to an answer that says wait)."""
    lines = []
    for follower in deliveries.followers:
        done = follower.export_due()
        line = f"export {follower.name}: {done.exported} exported, {done.rejected} rejected"
        if done.standby:
            line = f"export {follower.name}: another daemon holds its lease; nothing sent"
        elif done.halted is not None:
            line += f"; stopped: {done.halted.error} (the next sync or `logd run` goes on)"
        lines.append(line)
    return lines


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    """A sleep that returns at once after Ctrl-C, so a retry wait does not hold up the exit."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


def _line(task: Task) -> Text:
    """A source's counts, or what it waits on and for how long (read at every redraw)."""
    from rich.text import Text

    line: str = task.fields["line"]
    since: float | None = task.fields.get("waiting_since")
    until: float | None = task.fields.get("waiting_until")
    now = time.monotonic()
    if until is not None and until <= now:
        since = None  # a rate-budget wait that is over
    if since is not None and not task.finished:
        if until is not None:
            wait = f"{task.fields['waiting']}, resuming in {until - now:.0f} s"
        else:
            wait = f"{task.fields['waiting']} {now - since:.0f}s"
        line = wait if line == "starting" else f"{line}; {wait}"
    return Text(line)


class _RichProgress:
    """A live line per source: pages, entries, rate, a wait with its time; a spinner."""

    def __init__(self, sources: Sequence[Any]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        class LineColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                return _line(task)

        self._lock = threading.Lock()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[source]}"),
            BarColumn(bar_width=24),
            LineColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.tasks = {
            s.name: self.progress.add_task(
                "",
                total=None,
                source=s.name,
                line="starting",
                waiting_since=None,
                waiting=None,
                waiting_until=None,
            )
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
        line = f"{report.pages} pages, {report.new} new, {report.updated} updated, {rate:,.0f}/s"
        if report.invalid:
            line += f", {report.invalid} quarantined"
        if report.error:  # printed once, whole, after the display
            line = f"failed after {report.requests} requests (the error follows)"
        elif not report.pages and not report.done:
            line = "starting"
        with self._lock:
            task = self.tasks[report.source]
            self.progress.update(
                task,
                line=line,
                waiting_since=report.waiting_since,
                waiting=report.waiting,
                waiting_until=report.waiting_until,
            )
            if report.total:
                self.progress.update(task, total=report.total, completed=report.seen)
            if report.done:
                self.progress.update(self.tasks[report.source], total=1, completed=1)
