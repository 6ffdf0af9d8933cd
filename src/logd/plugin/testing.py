"""Helpers for testing providers against their simulators with the real engine and store.

    def test_backfill(tmp_path):
        with FleetITSimulator() as sim:
            run = SyncRun(tmp_path, [sim.demo_source("fleet")])
            report = run.sync()["fleet"]
            assert report.ok and report.new == 250

Nothing here sleeps: retries wait through `SyncRun.waits` (recorded, not slept).

The provider contract suite every plugin with a simulator passes builds on `SyncRun`: it is
`logd.plugin.contract` (`contract_cases`, `run_check`), imported from there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from logd.config.settings import Settings, load_settings
from logd.engine.poller import Engine, SourceReport
from logd.plugin.manager import load_plugins
from logd.store import open_store
from logd.store.interface import BatchHook, Filters, Row, Store

T = TypeVar("T")


def write_config(directory: Path, sources: Sequence[dict[str, Any]], **top: Any) -> Path:
    """Write a config file with these `[[sources]]` tables and top-level keys; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"database": str(directory / "logd.db"), **top, "sources": list(sources)}
    path = directory / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)  # it holds literal secrets: logd warns about a file others can read
    return path


class SyncRun:
    """A config, a store and an engine in one temp directory; `sync()` polls like `logd sync`."""

    def __init__(
        self,
        directory: Path,
        sources: Sequence[dict[str, Any]],
        *,
        batch_hooks: Sequence[BatchHook] = (),
        now: Callable[[], datetime] | None = None,
        group: int = 1,
        store: Any = None,
        **top: Any,
    ) -> None:
        # Fast, recorded retries and no rate budget (its waits would be recorded, not slept,
        # so they would pile up) unless a test sets its own.
        tables = [
            {"retry": {"attempts": 4, "max_wait": 30}, "max_rate": "off", **s} for s in sources
        ]
        self.config = write_config(directory, tables, **top)
        self.settings: Settings = load_settings(self.config)
        # Any `logd.store.interface.Store` (the in-memory one, say); else the config's file.
        self.store: Store = open_store(self.settings.database) if store is None else store
        self.waits: list[float] = []
        self.engine = Engine(
            self.settings,
            self.store,
            load_plugins(),
            sleep=self.waits.append,
            batch_hooks=batch_hooks,
            now=now or (lambda: datetime.now(UTC)),
            # Each batch commits on its own, so a test sees the provider's batch boundaries
            # whatever the timing; `logd sync` and `logd run` group what piles up.
            group=group,
        )

    def sync(self, *names: str, stop: threading.Event | None = None) -> dict[str, SourceReport]:
        """Poll the named sources (default all enabled) once; reports by source name.

        `stop` is the engine's stop event (what Ctrl-C sets): a poll ends after the batch
        it is committing once it is set.
        """
        sources = [self.settings.source(n) for n in names] or [
            s for s in self.settings.sources if s.enabled
        ]
        return {r.source: r for r in self.engine.sync(sources, stop=stop)}

    def rows(self, **filters: Any) -> list[Row]:
        """All stored entries matching `Filters(**filters)`, newest first."""
        return self.store.search(Filters(**filters), limit=None)

    def count(self) -> int:
        """Number of stored entries."""
        return sum(int(row["entries"]) for row in self.store.source_stats())

    def cursor(self, source: str) -> Any:
        """A source's stored cursor."""
        return self.store.cursor(source)

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def run_bounded(
    fn: Callable[[], T], seconds: float, *, unstick: Callable[[], object] = lambda: None
) -> tuple[T, bool]:
    """Run `fn` in a thread, as a hang guard: its result and whether it overran `seconds`.

    When it overruns, `unstick` runs (say, `sim.clear_faults`, which ends a drip) and `fn` gets
    another minute to finish; a test asserts on the flag instead of hanging. Exceptions from
    `fn` are raised here. Not a timing assertion: pick `seconds` far above the expected time.
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="bounded", daemon=True)
    thread.start()
    thread.join(seconds)
    overran = thread.is_alive()
    if overran:
        unstick()
        thread.join(60)
        if thread.is_alive():
            raise AssertionError(f"still running {seconds + 60:.0f}s after it started")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value, overran


def wait_until(check: Callable[[], T | None], timeout: float, what: str = "condition") -> T:
    """Poll `check` every 20 ms until it returns something truthy; AssertionError at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
