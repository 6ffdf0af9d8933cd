"""`logd simulate`: the installed simulators on fixed ports, and a config that points at them.

For plugin authors and anyone trying logd by hand: unlike `logd demo`, whose simulators take
whatever ports are free and whose config lives in its own directory, each provider gets
`port_base + i` (i = its place among the installed simulators, sorted by provider name), so
a config written once keeps working across restarts.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import click
import tomli_w

from logd.errors import ConfigError
from logd.plugin.manager import load_plugins
from logd.plugin.simulator import Simulator

DEFAULT_PORT_BASE = 8700
HOST = "127.0.0.1"


def simulator_ports(port_base: int) -> dict[str, int]:
    """Provider name → port, for every installed simulator: `port_base + i` in name order."""
    names = sorted(load_plugins().simulators)
    return {name: port_base + i for i, name in enumerate(names)}


def start_on_fixed_ports(providers: Sequence[str], port_base: int) -> dict[str, Simulator]:
    """Start the named simulators (default: all) on their fixed ports; `ConfigError` if not."""
    registry = load_plugins()
    ports = simulator_ports(port_base)
    unknown = [p for p in providers if p not in ports]
    if unknown:
        installed = ", ".join(ports) or "none"
        raise ConfigError(
            f"no simulator for provider {unknown[0]!r}; installed: {installed}",
            hint="`logd plugins` lists them; install plugins/* to add more",
        )
    if not ports:
        raise ConfigError("no installed plugin ships a simulator", hint="install plugins/*")
    if port_base < 1 or port_base + len(ports) - 1 > 65_535:
        raise ConfigError(f"--port-base {port_base}: ports must stay within 1-65535")
    running: dict[str, Simulator] = {}
    try:
        for name in sorted(set(providers) or ports):
            sim = registry.simulators[name]()
            try:
                sim.start(HOST, ports[name])
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {HOST}:{ports[name]} for {name}: {exc.strerror}",
                    hint="another program (or logd simulate) holds it; pass --port-base N",
                ) from None
            running[name] = sim
    except BaseException:
        for sim in running.values():
            sim.stop()
        raise
    return running


def simulated_config(sims: dict[str, Simulator], database: str = "logd-simulate.db") -> str:
    """A ready config: `database` (beside the file) and one `[[sources]]` per simulator."""
    doc: dict[str, Any] = {
        "database": database,
        "sources": [sim.demo_source(name) for name, sim in sims.items()],
    }
    urls = "".join(f"#   {name:<12} {sim.base_url}\n" for name, sim in sims.items())
    return (
        "# Written by `logd simulate`: each source points at a simulator on 127.0.0.1,\n"
        "# running until `logd simulate` stops:\n" + urls + "\n" + tomli_w.dumps(doc)
    )


END_MARK = "# end of config (logd simulate serves these until Ctrl-C)\n"


class StopSignals:
    """SIGINT and SIGTERM set an event while in use, so the simulators stop and exit 0.

    Installed before anything is printed: a caller that sees "ready" may signal at once.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()

    def wait(self) -> None:
        """Block until a stop signal."""
        while not self.stop.wait(0.5):
            pass


def write_config_file(path: Path, text: str) -> None:
    """Write the config owner-only: it holds the simulators' credentials as literals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def produce(sims: dict[str, Simulator], every: float, stop: threading.Event) -> threading.Thread:
    """A thread that has each simulator grow (`tick`) every `every` seconds until `stop`."""

    def run() -> None:
        while not stop.wait(every):
            for sim in sims.values():
                sim.tick()

    thread = threading.Thread(target=run, name="simulate-tick", daemon=True)
    thread.start()
    return thread


def serve(
    providers: Sequence[str], port_base: int, config_out: Path | None, tick: float = 0.0
) -> None:
    """`logd simulate`: start, hand out the config (stdout or a file), serve until a signal.

    `tick` > 0: every simulator produces a few new records that often, as a live API would,
    so a daemon pointed at them has something new to poll.
    """
    with StopSignals() as signals:
        sims = start_on_fixed_ports(providers, port_base)
        try:
            text = simulated_config(sims)
            if config_out is not None:
                write_config_file(config_out, text)
                click.echo(f"config written to {config_out}", err=True)
            else:
                click.echo(text + END_MARK, nl=False)
                sys.stdout.flush()
            for name, sim in sims.items():
                click.echo(f"{name:<12} {sim.base_url}", err=True)
            if tick > 0:
                produce(sims, tick, signals.stop)
                click.echo(f"each simulator adds a few records every {tick:g}s", err=True)
            click.echo("simulators ready; Ctrl-C stops them", err=True)
            signals.wait()
        finally:
            for sim in sims.values():
                sim.stop()
