"""`logd webhooks …`: the outbox, retrying now, a test delivery, checking a signature."""

from __future__ import annotations

import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from logd.cli.options import config_option, db_option, format_option
from logd.errors import ConfigError, LogdError

if TYPE_CHECKING:
    from logd.store.interface import DeliveryState


@click.group()
def webhooks() -> None:
    """Failure webhooks: list deliveries, retry them, send a test, verify a signature."""


@webhooks.command("list")
@config_option
@db_option
@click.option("--state", type=click.Choice(["pending", "dead", "done"]), help="Only this state.")
@click.option("--limit", "-n", default=50, show_default=True, help="At most N rows; 0 = all.")
@format_option(
    ["table", "json"],
    "table: one line a delivery, ids whole; json: every field.",
)
@click.option("--local", is_flag=True, help="Show times in local time (TZ); default UTC.")
def list_command(
    config: Path | None, db: Path | None, state: str | None, limit: int, fmt: str, local: bool
) -> None:
    """Queued deliveries, newest first: created, state, attempts, next attempt, last error.

    Times are UTC unless --local. The last errors of deliveries not done are printed whole below.
    """
    from logd.cli.output import write_records
    from logd.cli.table import Column
    from logd.config.paths import database_path
    from logd.store import open_reader
    from logd.timeparse import short_time, zone_name

    # Read-only: no pydantic, no migrations.
    with closing(open_reader(db or database_path(config))) as store:
        rows = [
            d.summary()
            for d in store.list_deliveries(
                state=cast("DeliveryState | None", state), limit=limit or None
            )
        ]
    if fmt != "table":
        write_records(rows, fmt, sys.stdout)
        return
    # One line a delivery, its id whole (for `webhooks retry`); --format json has every field.
    zone = zone_name(local=local)
    table = [
        {
            "delivery": r["delivery_id"],
            f"created ({zone})": short_time(r["created_at"], local=local),
            "state": r["state"],
            "source": r["source"],
            "webhook": r["webhook"],
            "entries": r["count"],
            "tries": r["attempts"],
            f"next try ({zone})": short_time(r["next_attempt_at"], local=local),
            "last error": r["last_error"],
        }
        for r in rows
    ]
    columns = [
        Column("tries", drop=1),
        Column(f"next try ({zone})", drop=2),
        Column("entries", drop=3),
        Column("webhook", drop=4),
        Column("last error", shrink=1, floor=10, drop=5),
        Column("source", drop=6),
    ]
    errors = [
        (r["delivery_id"], r["last_error"])
        for r in rows
        if r["state"] != "done" and r["last_error"]
    ]
    write_records(table, "table", sys.stdout, columns=columns, notes=errors)


@webhooks.command()
@click.argument("ids", nargs=-1)
@config_option
@click.pass_context
def retry(ctx: click.Context, ids: tuple[str, ...], config: Path | None) -> None:
    """Deliver now: the named deliveries (dead ones too), else every pending one."""
    from logd.config.settings import load_settings
    from logd.delivery.deliverer import DeliveryStats
    from logd.delivery.wiring import wire_deliveries
    from logd.store import open_store

    settings = load_settings(config)
    with (
        closing(open_store(settings.database)) as store,
        wire_deliveries(settings, store) as deliveries,
    ):
        due = deliveries.outbox.make_due(ids, datetime.now(UTC))
        missing = sorted(set(ids) - set(due))
        if missing:
            raise LogdError(
                f"no pending or dead delivery {', '.join(missing)}",
                hint="see `logd webhooks list`",
            )
        if not due:
            click.echo("nothing to deliver")
            return
        deliverer = deliveries.deliverer
        stats = deliverer.deliver_due(ids=due) if deliverer else DeliveryStats()
    for outcome in stats.outcomes:
        detail = f": {outcome.error}" if outcome.error else ""
        click.echo(f"{outcome.delivery_id} ({outcome.sink}): {outcome.state}{detail}")
    left = len(due) - len(stats.outcomes)
    if left:
        click.echo(f"{left} not tried: their webhook is failing or no longer configured")
    click.echo(f"{stats.delivered} delivered, {stats.retrying} retrying, {stats.dead} dead")
    if stats.delivered < len(due):
        ctx.exit(1)


@webhooks.command()
@click.argument("name")
@config_option
@click.pass_context
def test(ctx: click.Context, name: str, config: Path | None) -> None:
    """Send the webhook NAME a signed sample delivery now and show the answer."""
    from logd.config.settings import load_settings
    from logd.delivery.sinks.webhook import send_test

    settings = load_settings(config)
    hooks = {w.name: w for w in settings.webhooks}
    if name not in hooks:
        known = ", ".join(hooks) or "none"
        raise ConfigError(f"no webhook named {name!r} in the config; configured: {known}")
    delivery_id, sent = send_test(hooks[name])
    if sent.result == "delivered":
        click.echo(f"{name}: delivered (HTTP {sent.status}), delivery {delivery_id}")
        return
    click.secho(f"{name}: not delivered: {sent.error}", err=True, fg="red")
    ctx.exit(1)


@webhooks.command()
@click.option(
    "--secret",
    envvar="LOGD_WEBHOOK_SECRET",
    required=True,
    help="The webhook's secret (or set LOGD_WEBHOOK_SECRET, kept out of shell history).",
)
@click.option("--timestamp", required=True, help="X-Timestamp / webhook-timestamp header.")
@click.option("--signature", required=True, help="X-Signature / webhook-signature header.")
@click.option(
    "--scheme",
    type=click.Choice(["fleetit", "standard-webhooks"]),
    default="fleetit",
    show_default=True,
)
@click.option("--id", "msg_id", help="webhook-id header (standard-webhooks).")
@click.pass_context
def verify(
    ctx: click.Context,
    secret: str,
    timestamp: str,
    signature: str,
    scheme: Any,
    msg_id: str | None,
) -> None:
    """Check a delivery's signature; the raw body on stdin. Exit 0 when valid, 1 when not."""
    from logd.delivery.signing import verify as check

    if scheme == "standard-webhooks" and not msg_id:
        raise click.UsageError("--id (the webhook-id header) is required for standard-webhooks")
    if sys.stdin.isatty():  # not piped: say what it waits for instead of hanging silently
        click.echo(
            "reading the raw body from stdin; pipe it in (… | logd webhooks verify …) "
            "or type it and end with Ctrl-D",
            err=True,
        )
    body = sys.stdin.buffer.read()
    if check(scheme, secret, body, timestamp, signature, msg_id):
        click.echo("valid")
        return
    click.echo("invalid: the signature does not match this body, timestamp and secret")
    ctx.exit(1)


@webhooks.command()
@click.option("--secret", envvar="LOGD_WEBHOOK_SECRET", required=True, help="Secret to check with.")
@click.option("--scheme", type=click.Choice(["fleetit", "standard-webhooks"]), default="fleetit")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
def receive(secret: str, scheme: Any, host: str, port: int) -> None:
    """Run a local receiver that verifies deliveries and prints them (for trying webhooks)."""
    import contextlib
    import threading

    from logd.delivery.receiver import Received, Receiver

    def show(got: Received) -> None:
        mark = "verified" if got.verified else "BAD SIGNATURE"
        try:
            body = got.json()
            what = f"{body.get('count')} entries from {body.get('source')}"
        except ValueError:
            what = f"{len(got.body)} bytes"
        click.echo(f"{got.delivery_id}: {mark}: {what}")

    with Receiver(secret, scheme=scheme, host=host, port=port, on_delivery=show) as rx:
        click.echo(f"listening on {rx.url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
