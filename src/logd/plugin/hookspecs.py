"""Every hook a logd plugin can implement. Hooks register things; they do no work.

A plugin is a module (or distribution) exposing functions marked with `logd.hookimpl`, listed
under the `logd` entry-point group::

    [project.entry-points.logd]
    fleetit = "logd_fleetit"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from logd.delivery.sinks import SinkKind
    from logd.plugin.provider import Provider
    from logd.plugin.simulator import Simulator

hookspec = pluggy.HookspecMarker("logd")
hookimpl = pluggy.HookimplMarker("logd")


@hookspec
def register_providers(register: Callable[[type[Provider[Any]]], None]) -> None:
    """Register provider classes, one call of `register` each.

    :param register: call with a `Provider` subclass, e.g. ``register(FleetIT)``.
    """


@hookspec
def register_simulators(register: Callable[[type[Simulator]], None]) -> None:
    """Register local simulators of vendor APIs, used by the tests and `logd demo`.

    :param register: call with a `Simulator` subclass, e.g. ``register(FleetITSimulator)``.
    """


@hookspec
def register_sinks(register: Callable[[SinkKind], None]) -> None:
    """Register kinds of sink (where entries are delivered), one call of `register` each.

    A kind's config tables each become a sink with a lane of its own in the outbox; logd's
    own `webhook` kind is registered this way too (`logd.delivery.sinks.builtin`).

    :param register: call with a `logd.delivery.sinks.SinkKind`, e.g. ``register(OTLP)``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the `logd` command line.

    `logd --help` imports only the plugins whose entry-point module names this hook in its
    source (or cannot be read as text, see `logd.entrypoints`), so that listing the commands
    does not import every provider: define or import `register_commands` there by name.

    :param cli: the top-level click group; use ``@cli.command()``.
    """
