"""The `logd` command line. The only module that prints.

Errors logd raises on purpose become one line (`error: …`, then a hint) and an exit code:
2 for a user's mistake (config, options, query syntax), 1 for a failed source. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .__about__ import __version__
from .errors import ConfigError, LogdError
from .webhooks_cli import webhooks

if TYPE_CHECKING:
    from .reader import Reader

log = logging.getLogger("logd")


class LogdGroup(click.Group):
    """Turns `LogdError` into a one-line message and its exit code; adds plugin commands.

    Plugin commands load only when a name is not built in (or for `--help`), so that `query`,
    `show` and `status` start without importing any plugin; and even then only when some
    enabled plugin may implement `register_commands` (`logd.entrypoints.may_add_commands`),
    so that `--help` does not import every provider to learn that none adds a command.
    """

    _plugin_commands_loaded = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugin_commands_loaded:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        LogdGroup._plugin_commands_loaded = True
        from .entrypoints import enabled_entry_points, may_add_commands

        if not any(may_add_commands(ep) for ep in enabled_entry_points()):
            return
        from .plugins import load_plugins

        try:
            load_plugins().pm.hook.register_commands(cli=self)
        except LogdError as exc:  # a clash of providers still leaves the built-ins usable
            log.warning("plugin commands not loaded: %s", exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogdError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.secho(f"error: {line}", err=True, fg="red")
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


def configure_logging(level: str) -> None:
    """One line per event on stderr; journald adds its own timestamps when it is the reader."""
    from .logs import setup

    setup(level)


config_option = click.option(
    "-c",
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: $LOGD_CONFIG, else /etc/logd/config.toml).",
)
db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read this store file instead of the config's database.",
)


@click.group(cls=LogdGroup)
@click.version_option(__version__, prog_name="logd")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override the config's log_level.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """logd: integration logs from vendor APIs in one searchable SQLite file."""
    ctx.ensure_object(dict)
    ctx.obj["log_level"] = log_level
    configure_logging(log_level or os.environ.get("LOGD_LOG_LEVEL", "warning"))


def _settings(config: Path | None, *, named_plugins: bool = False) -> Any:
    from .config import load_settings

    return load_settings(config, named_plugins=named_plugins)


def _open_store(config: Path | None, db: Path | None) -> Reader:
    """The store for read-only commands: `--db`, else the config's database path.

    Neither pydantic (the config models) nor sqlite_utils (the writer) is imported here: the
    read commands start in a fraction of the time.
    """
    from .reader import Reader

    if db is not None:
        return Reader(db)
    from .paths import database_path

    return Reader(database_path(config))


@cli.command("check-config")
@config_option
def check_config(config: Path | None) -> None:
    """Validate the config file; exit 0 when valid, 2 when not."""
    settings = _settings(config)
    from .config import config_path

    click.echo(f"{config_path(config)}: ok")
    click.echo(f"  database: {settings.database}")
    for src in settings.sources:
        state = "" if src.enabled else " (disabled)"
        click.echo(f"  source {src.name}: {src.provider} every {src.interval:g}s{state}")
    for hook in settings.webhooks:  # the host only: a webhook URL's path may hold a token
        click.echo(f"  webhook {hook.name}: {hook.signature}-signed to {hook.host}")


@cli.command()
@config_option
@click.option("--source", "-s", "names", multiple=True, help="Only this source (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="Plain lines, no progress display.")
@click.pass_context
def sync(ctx: click.Context, config: Path | None, names: tuple[str, ...], quiet: bool) -> None:
    """Poll every enabled source once, to completion, and store what is new."""
    from .sync import run_sync

    settings = _settings(config, named_plugins=True)
    if ctx.obj.get("log_level") is None:
        configure_logging(os.environ.get("LOGD_LOG_LEVEL") or settings.log_level)
    reports = run_sync(settings, names, quiet=quiet)
    if any(not r.ok for r in reports):
        ctx.exit(1)


@cli.command()
@click.argument("text", required=False)
@config_option
@db_option
@click.option(
    "--fts",
    is_flag=True,
    help='TEXT is an expression: AND, OR, NOT, "phrases", prefix*, ( ), message:, error:.',
)
@click.option("--source", "-s", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--provider", "-p", "providers", multiple=True, help="Only this provider (repeatable)."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["success", "failure", "pending"]),
    help="Only this status (repeatable).",
)
@click.option("--failed", is_flag=True, help="Same as --status failure.")
@click.option("--since", help="From this time: 15m, 2h, 7d, 2024-05-01, 2024-05-01T10:00.")
@click.option("--until", help="Before this time (same forms as --since).")
@click.option("--limit", "-n", default=50, show_default=True, help="At most N entries; 0 = all.")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["table", "json", "ndjson", "csv"]), default="table"
)
@click.option("--follow", "-F", is_flag=True, help="Keep printing new matching entries.")
def query(
    text: str | None,
    config: Path | None,
    db: Path | None,
    fts: bool,
    sources: tuple[str, ...],
    providers: tuple[str, ...],
    statuses: tuple[str, ...],
    failed: bool,
    since: str | None,
    until: str | None,
    limit: int,
    fmt: str,
    follow: bool,
) -> None:
    """Search stored entries, newest first."""
    from .output import write_rows
    from .queries import build_filters, follow_rows

    if limit < 0:
        raise click.BadParameter("must be 0 (all) or more", param_hint="--limit")
    filters = build_filters(
        text=text,
        fts=fts,
        sources=sources,
        providers=providers,
        statuses=(*statuses, *(("failure",) if failed else ())),
        since=since,
        until=until,
    )
    with _open_store(config, db) as store:
        color = sys.stdout.isatty()
        if follow:
            follow_rows(store, filters, fmt, sys.stdout, color=color, limit=limit or None)
            return
        rows = store.search(filters, limit=limit or None)
        write_rows(rows, fmt, sys.stdout, color=color)


@cli.command()
@click.argument("entry_id")
@config_option
@db_option
@click.option("--format", "-f", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def show(entry_id: str, config: Path | None, db: Path | None, fmt: str) -> None:
    """Show one entry whole, raw record and details included (ID is SOURCE:NATIVE_ID)."""
    from .output import dumps, write_entry

    with _open_store(config, db) as store:
        row = store.get(entry_id)
        if row is None:
            raise LogdError(
                f"no entry {entry_id!r}", hint="ids look like fleet:123456; see `logd query`"
            )
        if fmt == "json":
            click.echo(dumps(row.as_dict()))
        else:
            write_entry(row, sys.stdout, color=sys.stdout.isatty())


@cli.command()
@config_option
@db_option
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
def status(config: Path | None, db: Path | None, fmt: str) -> None:
    """Per source: last poll, last success, last error, entries, failures, cursor."""
    from .status import collect_status, write_status

    with _open_store(config, db) as store:
        write_status(collect_status(store, config if db is None else None), fmt, sys.stdout)


@cli.command()
@config_option
@click.option(
    "--log-level",
    "run_log_level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override the config's log_level (same as `logd --log-level`).",
)
@click.pass_context
def run(ctx: click.Context, config: Path | None, run_log_level: str | None) -> None:
    """Run the daemon: poll each enabled source on its interval until SIGTERM (docs/deploy.md)."""
    from .daemon import run_daemon

    level = run_log_level or ctx.obj.get("log_level") or os.environ.get("LOGD_LOG_LEVEL")
    ctx.exit(run_daemon(config, log_level=level))


@cli.command()
@config_option
@db_option
@click.option(
    "--since", default="7d", show_default=True, help="From this time (15m, 2h, 7d, a date)."
)
@click.option(
    "--by",
    type=click.Choice(["source", "provider", "day", "status"]),
    default="source",
    show_default=True,
    help="Group by.",
)
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def stats(config: Path | None, db: Path | None, since: str, by: str, fmt: str) -> None:
    """Counts and failure rates: the summary to look at first."""
    from .errors import QueryError
    from .output import write_records
    from .timeparse import parse_time

    try:
        since_at = parse_time(since)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    with _open_store(config, db) as store:
        rows = store.stats(since=since_at, by=by)
    if fmt == "table":
        for row in rows:
            row["failure_rate"] = f"{row['failure_rate']:.1f}%"
    write_records(rows, fmt, sys.stdout)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: eval "$(logd completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    ctx = click.get_current_context()
    click.echo(cls(cli, {}, ctx.find_root().info_name or "logd", "_LOGD_COMPLETE").source())


@cli.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the config models."""
    from .reference import render

    click.echo(render(), nl=False)


@cli.command()
def plugins() -> None:
    """Installed plugins and the providers and simulators they register."""
    from .plugins import load_plugins

    registry = load_plugins()
    if not registry.plugins:
        click.echo("no plugins installed")
    for info in registry.plugins:
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else ""
        if info.error:
            click.echo(f"{info.name}{dist}: failed to load: {info.error}")
            continue
        click.echo(f"{info.name}{dist}")
        for name in info.providers:
            cls = registry.providers[name]
            sim = " [simulator]" if name in registry.simulators else ""
            click.echo(f"  provider {name}: {cls.description or cls.__doc__ or ''}{sim}")


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("logd-demo"),
    show_default=True,
    help="Where the demo config and database go.",
)
@click.option("--keep-running", is_flag=True, help="Leave the daemon polling the simulators.")
def demo(directory: Path, keep_running: bool) -> None:
    """Start the simulators, sync them into a demo database and show what arrived."""
    from .demo import run_demo

    run_demo(directory, keep_running=keep_running)


cli.add_command(webhooks)

__all__ = ["ConfigError", "cli"]
