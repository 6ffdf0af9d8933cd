"""`logd migrate-store`: copy a SQLite store into a PostgreSQL database, resumably."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from logd.errors import ConfigError


@click.command("migrate-store")
@click.option(
    "--from",
    "origin",
    required=True,
    metavar="sqlite:PATH",
    help="The SQLite store to copy (stop `logd run` first).",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="postgresql://…",
    help="The PostgreSQL database to copy into (empty, or an interrupted copy of the same "
    "store). Give the password in PGPASSWORD or ~/.pgpass rather than on the command line.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Rows per transaction.",
)
def migrate_store(origin: str, target: str, chunk: int) -> None:
    """Copy entries, cursors, poll runs and the outbox (pending deliveries included) from a
    SQLite store into PostgreSQL, then check that both hold the same counts.

    Killed or interrupted, the same command resumes after the last chunk it stored.
    """
    scheme, sep, path = origin.partition(":")
    if not sep or scheme != "sqlite" or not path:
        raise ConfigError(
            f"--from {origin!r}: expected sqlite:PATH, e.g. sqlite:/var/lib/logd/logd.db"
        )
    if not target.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--to: expected a postgresql:// URL")
    from logd.store.migrate import sqlite_to_postgres

    def started(origin: str, target: str) -> None:
        click.echo(f"copying {origin} into {target}", err=True)

    def progress(what: str, n: int) -> None:
        click.echo(f"  {what}: {n:,}", err=True)

    result = sqlite_to_postgres(Path(path), target, chunk=chunk, started=started, progress=progress)
    totals = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.totals.items())
    how = "resumed; " if result.resumed else ""
    sys.stdout.write(f"copied and verified ({how}both stores hold {totals})\n")
