"""`logd exports …`: the `[[exports]]` tables (OTLP); for now, a test record sent now."""

from __future__ import annotations

from pathlib import Path

import click

from logd.cli.options import config_option
from logd.errors import ConfigError


@click.group()
def exports() -> None:
    """Exports of every stored entry (OTLP): send a test record."""


@exports.command()
@click.argument("name")
@config_option
@click.pass_context
def test(ctx: click.Context, name: str, config: Path | None) -> None:
    """Send the export NAME's collector one sample log record now and show the answer."""
    from logd.config.settings import load_settings
    from logd.delivery.sinks.otlp import send_test

    settings = load_settings(config)
    configured = {e.name: e for e in settings.exports}
    if name not in configured:
        known = ", ".join(configured) or "none"
        raise ConfigError(f"no export named {name!r} in the config; configured: {known}")
    export = configured[name]
    result = send_test(export)
    where = f"{export.host} ({export.format})"
    if result.outcome == "delivered" and not result.rejected:
        click.echo(f"{name}: delivered to {where}, HTTP {result.status}")
        return
    if result.outcome == "delivered":
        why = f"the collector took the request but rejected the record: {result.error}"
    else:
        why = f"not delivered: {result.error}"
    click.secho(f"{name}: {why}", err=True, fg="red")
    ctx.exit(1)
