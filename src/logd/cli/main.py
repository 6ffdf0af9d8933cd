"""The `logd` command line. The only module that prints.

Errors logd raises on purpose become one line (`error: …`, then a hint) and an exit code:
2 for a user's mistake (config, options, query syntax), 1 for a failed source. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from logd.__about__ import __version__
from logd.cli.exports import exports
from logd.cli.migrate_store import migrate_store
from logd.cli.options import config_option, db_option, format_option, local_option
from logd.cli.webhooks import webhooks
from logd.errors import ConfigError, LogdError

if TYPE_CHECKING:
    from logd.store.interface import Store

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
        from logd.plugin.entrypoints import enabled_entry_points, may_add_commands

        if not any(may_add_commands(ep) for ep in enabled_entry_points()):
            return
        from logd.plugin.manager import load_plugins

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
    from logd.logging_setup import setup

    setup(level)


class QueryCommand(click.Command):
    """`logd query`: an unknown option may be a search text that starts with `-`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if exc.possibilities:  # a near miss of a real option: click's "did you mean"
                raise
            hint = (
                f"use -- before a search text that starts with -: logd query -- {exc.option_name}"
            )
            raise click.NoSuchOption(
                exc.option_name, f"{exc.format_message()}\nhint: {hint}", ctx=exc.ctx
            ) from None


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
    from logd.config.paths import env_log_level

    ctx.ensure_object(dict)
    ctx.obj["log_level"] = log_level
    # An invalid LOGD_LOG_LEVEL is one line for every command, not a traceback from logging.
    configure_logging(log_level or env_log_level() or "warning")


def _settings(config: Path | None, *, named_plugins: bool = False) -> Any:
    """The validated config; its warnings (a literal secret others can read) on stderr."""
    from logd.config.settings import load_settings

    settings = load_settings(config, named_plugins=named_plugins)
    for line in settings.warnings:
        click.secho(f"warning: {line}", err=True, fg="yellow")
    return settings


def _open_store(config: Path | None, db: Path | None) -> Store:
    """The store for read-only commands: `--db`, else the config's database path.

    Neither pydantic (the config models) nor sqlite_utils (the writer) is imported here: the
    read commands start in a fraction of the time.
    """
    from logd.store import open_reader

    if db is not None:
        return open_reader(db)
    from logd.config.paths import database_path

    return open_reader(database_path(config))


@cli.command("check-config")
@config_option
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Resolve ${CREDENTIALS_DIRECTORY} here when it is unset, as the systemd unit "
    "would (default: /etc/logd/credentials, where install-service puts them).",
)
def check_config(config: Path | None, credentials_dir: Path | None) -> None:
    """Validate the config file, reporting every problem at once; exit 0 when valid, 2 when not."""
    from logd.config.settings import DEFAULT_CREDENTIALS_DIR, config_path, credentials_directory

    with credentials_directory(credentials_dir or DEFAULT_CREDENTIALS_DIR):
        settings = _settings(config)

    click.echo(f"{config_path(config)}: ok")
    click.echo(f"  database: {settings.database}")
    for src in settings.sources:
        state = "" if src.enabled else " (disabled)"
        click.echo(f"  source {src.name}: {src.provider} every {src.interval:g}s{state}")
    for hook in settings.webhooks:  # the host only: a webhook URL's path may hold a token
        click.echo(f"  webhook {hook.name}: {hook.signature}-signed to {hook.host}")
    for export in settings.exports:
        click.echo(f"  export {export.name}: {export.kind} ({export.format}) to {export.host}")


@cli.command()
@config_option
@click.option("--source", "-s", "names", multiple=True, help="Only this source (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="Plain lines, no progress display.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Fetch each source's first batch as a first poll would and print how its first "
    "entries map (id, time, status, message); store nothing.",
)
@click.pass_context
def sync(
    ctx: click.Context, config: Path | None, names: tuple[str, ...], quiet: bool, dry_run: bool
) -> None:
    """Poll every enabled source once, to completion, and store what is new."""
    from logd.cli.sync import run_sync, show_first_batch

    settings = _settings(config, named_plugins=True)
    if ctx.obj.get("log_level") is None:
        from logd.config.paths import env_log_level

        configure_logging(env_log_level() or settings.log_level)
    if dry_run:
        ctx.exit(0 if show_first_batch(settings, names) else 1)
    reports = run_sync(settings, names, quiet=quiet)
    if any(not r.ok for r in reports):
        ctx.exit(1)


@cli.command(cls=QueryCommand)
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
    # logd.entries.Status, spelled out: `query` starts without importing the entry model.
    type=click.Choice(["success", "failure", "pending", "invalid"]),
    help="Only this status (repeatable); `invalid`: records quarantined as unreadable.",
)
@click.option("--failed", is_flag=True, help="Same as --status failure.")
@click.option(
    "--since",
    help="From this time: 15m, 2h, 7d ago, or 2024-05-01, 2024-05-01T10:00 (UTC unless --local).",
)
@click.option("--until", help="Before this time (same forms as --since).")
@click.option("--limit", "-n", default=50, show_default=True, help="At most N entries; 0 = all.")
@format_option(
    ["table", "json", "ndjson", "csv"],
    "table: one line an entry, ids whole; json/ndjson: every field, raw record "
    "included; csv: the table's fields for a spreadsheet.",
)
@click.option("--follow", "-F", is_flag=True, help="Keep printing new matching entries.")
@local_option
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
    local: bool,
) -> None:
    """Search stored entries, newest first.

    Times are UTC (table header `time (UTC)`, and a --since/--until date without a zone)
    unless --local. A search TEXT starting with `-` goes after `--`: logd query -- -x.
    """
    from logd.cli.output import write_rows
    from logd.cli.query import build_filters, check_names, follow_rows

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
        local=local,
    )
    with closing(_open_store(config, db)) as store:
        check_names(store, sources=sources, providers=providers, config=config)
        color = sys.stdout.isatty()
        if follow:
            follow_rows(
                store, filters, fmt, sys.stdout, color=color, limit=limit or None, local=local
            )
            return
        rows = store.search(filters, limit=limit or None)
        write_rows(rows, fmt, sys.stdout, color=color, local=local)


@cli.command()
@click.argument("entry_id")
@config_option
@db_option
@format_option(
    ["pretty", "json"],
    "pretty: every field, raw record and details indented; json: one object for scripts.",
)
@local_option
def show(entry_id: str, config: Path | None, db: Path | None, fmt: str, local: bool) -> None:
    """Show one entry whole, raw record and details included.

    ENTRY_ID is SOURCE:NATIVE_ID as `logd query` prints it, or any unique start of one
    (`fleet:12`): several entries starting so are listed (exit 2).
    """
    from logd.cli.output import dumps, write_entry
    from logd.errors import QueryError

    with closing(_open_store(config, db)) as store:
        row = store.get(entry_id) if ":" in entry_id else None
        if row is None:
            # Not an id: the start of one? Eleven tell "more than ten" from ten.
            found = store.ids_starting(entry_id, limit=11)
            if not found:
                raise QueryError(
                    f"no entry {entry_id!r}",
                    hint="ids look like fleet:123456 (any unique start of one will do); "
                    "see `logd query`",
                )
            if len(found) > 1:
                listed = ", ".join(found[:10]) + (", …" if len(found) > 10 else "")
                more = "more than 10" if len(found) > 10 else str(len(found))
                raise QueryError(
                    f"{entry_id!r} starts {more} entry ids: {listed}",
                    hint="type more of the id",
                )
            row = store.get(found[0])
            assert row is not None  # just listed, and a reader's store has no deletes
        if fmt == "json":
            click.echo(dumps(row.as_dict()))
        else:
            write_entry(row, sys.stdout, color=sys.stdout.isatty(), local=local)


@cli.command()
@config_option
@db_option
@format_option(
    ["table", "json"],
    "table: one line a source, failing sources' errors whole below; json: every field.",
)
@local_option
def status(config: Path | None, db: Path | None, fmt: str, local: bool) -> None:
    """Per source: state, last success, entries, failures, last error (all time; UTC times)."""
    from logd.cli.status import collect_status, write_status

    with closing(_open_store(config, db)) as store:
        rows = collect_status(store, config if db is None else None)
        write_status(rows, fmt, sys.stdout, local=local)


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
    from logd.config.paths import env_log_level
    from logd.daemon.service import run_daemon

    level = run_log_level or ctx.obj.get("log_level") or env_log_level()
    ctx.exit(run_daemon(config, log_level=level))


@cli.command()
@config_option
@db_option
@click.option(
    "--since",
    help="From this time: 15m, 2h, 7d ago or a date (UTC unless --local). "
    "Default: 7d, 24h with --by hour.",
)
@click.option(
    "--by",
    type=click.Choice(["source", "provider", "status", "day", "hour"]),
    default="source",
    show_default=True,
    help="Group by; day and hour draw a bar per source of entries and failures over time.",
)
@format_option(
    ["table", "json", "csv"],
    "table: the window, then a table (or bars for day/hour); json/csv: the rows only.",
)
@local_option
def stats(
    config: Path | None, db: Path | None, since: str | None, by: str, fmt: str, local: bool
) -> None:
    """Counts and failure rates over a window (default the last 7 days): look here first.

    The window is printed first (`entries from … UTC to now`); `logd status` counts all
    time. Days and hours are UTC days and hours unless --local.
    """
    from logd.cli.output import terminal_width, use_color, write_records
    from logd.cli.stats import window_line, write_bars
    from logd.cli.table import Column
    from logd.errors import QueryError
    from logd.timeparse import parse_time

    try:
        since_at = parse_time(since or ("24h" if by == "hour" else "7d"), local=local)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    with closing(_open_store(config, db)) as store:
        if by in ("day", "hour"):
            rows = store.bucket_stats(
                since=since_at, by="day" if by == "day" else "hour", local=local
            )
        else:
            rows = store.stats(since=since_at, by=by)
    if fmt != "table":
        write_records(rows, fmt, sys.stdout)
        return
    click.echo(window_line(since_at, by=by, local=local))
    if by in ("day", "hour"):
        color = use_color(sys.stdout)
        write_bars(rows, by, sys.stdout, width=terminal_width(), color=color)
        return
    for row in rows:
        row["failure_rate"] = f"{row['failure_rate']:.1f}%"
    write_records(rows, fmt, sys.stdout, columns=[Column("pending", drop=1)])


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
    from logd.config.reference import render

    click.echo(render(), nl=False)


@cli.command()
def plugins() -> None:
    """Installed plugins and the providers and simulators they register."""
    from logd.plugin.manager import load_plugins

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
    from logd.cli.demo import run_demo

    run_demo(directory, keep_running=keep_running)


@cli.command()
@click.argument("providers", nargs=-1)
@click.option(
    "--port-base",
    type=int,
    default=8700,
    show_default=True,
    help="First port; each provider gets port-base + its place in name order.",
)
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the config to this file instead of stdout.",
)
@click.option(
    "--tick",
    type=click.FloatRange(min=0),
    default=0,
    help="Add a few new records to every simulator this often, in seconds (default: never).",
)
def simulate(
    providers: tuple[str, ...], port_base: int, config_out: Path | None, tick: float
) -> None:
    """Serve the installed simulators (or the named ones) on fixed ports until Ctrl-C.

    Prints a ready config whose sources point at them: save it and run
    `logd sync -c FILE`, `logd run -c FILE` or your own plugin against it.
    """
    from logd.cli.simulate import serve

    serve(providers, port_base, config_out, tick)


cli.add_command(webhooks)
cli.add_command(exports)
cli.add_command(migrate_store)

__all__ = ["ConfigError", "cli"]
