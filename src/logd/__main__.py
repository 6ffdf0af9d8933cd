"""`python -m logd`."""

from logd.cli.main import cli

cli()
