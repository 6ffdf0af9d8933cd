"""Options several `logd` commands share, declared once so they read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

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
#: One rule for times in every command (logd.timeparse): UTC unless --local.
local_option = click.option(
    "--local",
    is_flag=True,
    help="Show times in local time (TZ) and read dates without a zone in it; default UTC.",
)


def format_option(choices: Sequence[str], help: str) -> Callable[[Any], Any]:
    """`--format`/`-f` (passed as `fmt`) among `choices`, the first the default."""
    return click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=help,
    )
