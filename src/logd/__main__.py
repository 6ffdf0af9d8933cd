"""`python -m logd`."""

from .cli import cli

cli()
