"""What the delivery tests share: a store of either backend, settings with webhooks, a clock.

Every test of `test_delivery_*` runs against the in-memory store (`logd.store.memory`), the
SQLite one and the PostgreSQL one (a database of this test process's throwaway cluster),
through `wire_deliveries`, as `logd sync` and `logd run` wire them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from logd import Entry, Status
from logd.config.settings import Settings, load_settings
from logd.delivery.wiring import Deliveries, wire_deliveries
from logd.plugin.testing import write_config
from logd.store.interface import BatchResult, Delivery
from logd.store.memory import MemoryStore
from logd.store.sqlite.store import Store

SECRET = "fleetit-webhook-secret-0123456789"

STORES = ["memory", "sqlite", "postgres"]
ENGINE_STORES = ["sqlite", "memory", "postgres"]
STORES_WITH_CLAIMS = STORES


class Clock:
    """A settable clock, starting now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def source(name: str) -> dict[str, Any]:
    return {"name": name, "provider": "fleetit", "base_url": "http://127.0.0.1:9", "token": "t"}


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {"name": "ops", "url": url, "secret": SECRET, **kw}


def entry(
    native_id: str,
    status: Status = Status.FAILURE,
    *,
    ago: timedelta = timedelta(minutes=5),
    **kw: Any,
) -> Entry:
    return Entry(
        native_id=native_id,
        timestamp=datetime.now(UTC) - ago,
        status=status,
        message=kw.pop("message", f"call {native_id}"),
        **kw,
    )


def engine_store(kind: str) -> Any:
    """For `SyncRun(store=)`: a memory or PostgreSQL store, or None for the config's SQLite
    file."""
    if kind == "postgres":
        return open_store(kind, Path("."), lambda: datetime.now(UTC))
    return MemoryStore() if kind == "memory" else None


def open_store(kind: str, directory: Path, clock: Callable[[], datetime]) -> Any:
    """A store of `kind` ("memory", "sqlite" or "postgres")."""
    if kind == "memory":
        return MemoryStore(clock=clock)
    if kind == "postgres":
        from logd.store.postgres.cluster import cluster_for_tests, new_database
        from logd.store.postgres.store import PostgresStore

        store = PostgresStore(new_database(cluster_for_tests()))
        _postgres_stores.append(store)
        return store
    return Store(directory / "logd.db")


#: PostgreSQL stores the tests opened: closed after each test (`close_postgres_stores`), since
#: a connection pool left to the garbage collector joins its threads from whichever thread
#: collects it, a pool thread included, which fails.
_postgres_stores: list[Any] = []


@pytest.fixture(autouse=True)
def close_postgres_stores() -> Iterator[None]:
    """Close the PostgreSQL stores a test opened (autouse where imported)."""
    yield
    while _postgres_stores:
        _postgres_stores.pop().close()


class Env:
    """A store, settings with `webhooks`, and deliveries wired as `logd sync` wires them."""

    def __init__(
        self,
        kind: str,
        directory: Path,
        *webhooks: dict[str, Any],
        handler: Callable[[httpx.Request], httpx.Response] | None = None,
        **deliverer: Any,
    ) -> None:
        config = write_config(
            directory, [source("fleet"), source("other")], webhooks=list(webhooks)
        )
        self.settings: Settings = load_settings(config)
        self.clock = Clock()
        self.store = open_store(kind, directory, self.clock)
        self.transport = httpx.MockTransport(handler) if handler else None
        self.deliveries = self.wire()
        for key, value in deliverer.items():
            setattr(self.deliverer, key, value)

    def wire(self) -> Deliveries:
        return wire_deliveries(
            self.settings, self.store, clock=self.clock, transport=self.transport
        )

    @property
    def deliverer(self) -> Any:
        return self.deliveries.deliverer

    def commit(self, *entries: Entry, src: str = "fleet", hooks: Sequence[Any] = ()) -> BatchResult:
        result: BatchResult = self.store.commit_batch(
            src, list(entries), None, hooks=[*self.deliveries.hooks, *hooks], provider="fleetit"
        )
        return result

    def rows(self, **kw: Any) -> list[Delivery]:
        """The outbox, oldest first."""
        return list(reversed(listed(self.store, **kw)))

    def close(self) -> None:
        self.deliveries.close()
        self.store.close()


def listed(store: Any, **kw: Any) -> list[Delivery]:
    """`store.list_deliveries(**kw)`."""
    return list(store.list_deliveries(**kw))
