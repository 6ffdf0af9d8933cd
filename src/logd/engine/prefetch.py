"""Fetching ahead: a provider's next pages are requested while the store commits the last.

A poll is a pipeline of two halves that wait on different things: the provider waits on the
vendor's HTTP answers, the store on SQLite (which releases the GIL while it works). Running
the provider's generator in a thread of its own lets the two overlap, and that thread also
serializes each batch for the store (`prepare`), leaving the transaction only SQL. The store still
commits each batch with its own cursor, except that what piled up while it was busy goes in
one larger transaction (measured: 100-entry commits ran at 2/3 the speed of 5,000-entry ones).

What stays true, so that a provider cannot tell the difference:

- batches commit in the order the provider yielded them; batches that piled up while the
  store was busy may commit together (`groups`), in one transaction with the cursor of the
  last, so a crash still leaves a cursor that matches what is stored;
- `known_ids` answers as if every batch handed over were already stored (`in_flight`):
  a provider that stops at the first known record stops at the same place;
- a poll that ends early (an error, a stop) closes the generator in its own thread, so its
  `finally` blocks run, and what was fetched but not stored (at most `ahead`) is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from logd.plugin.entries import Batch, Entry, Invalid

#: Fetched but not yet committed, at most, in `size` units (the engine counts bytes of
#: serialized rows): bounds memory, whatever a provider yields. A Maestra row weighs ~4 times
#: a FleetIT one, so a budget in entries would let a backfill's memory follow the vendor.
AHEAD = 2 * 2**20
#: Per transaction, at most, when batches that piled up are committed together (same units).
GROUP = 2 * 2**20


class PollTimeout(Exception):
    """The poll's deadline passed while waiting for the provider (the engine records it)."""


class Prefetch:
    """Runs `batches` in a thread, at most `ahead` (in `size` units) in front of the store."""

    def __init__(
        self,
        batches: Iterator[Batch],
        *,
        name: str,
        prepare: Callable[[Batch], Any] = lambda batch: None,
        ahead: int = AHEAD,
        size: Callable[[Batch, Any], int] = lambda batch, prepared: len(batch.entries),
    ) -> None:
        self._batches = batches
        self._prepare = prepare
        self._ahead = ahead
        self._ready: deque[tuple[Batch, Any, int]] = deque()
        self._size = size
        self._queued = 0  # size of what is in `_ready`
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._cond = threading.Condition()
        #: Native ids handed over by the provider and not yet committed.
        self.in_flight: set[str] = set()
        self._thread = threading.Thread(target=self._produce, name=f"fetch-{name}", daemon=True)

    def start(self) -> Prefetch:
        """Start fetching (not in `__init__`: the provider may call back into its owner)."""
        self._thread.start()
        return self

    @property
    def cancelled(self) -> bool:
        """True once the consumer gave up: the provider should stop (`ctx.stopping`)."""
        return self._cancelled

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                # The provider's own entries: what `prepare` adds (quarantined records) is
                # not a known id, as the store's `known_ids` does not count it either.
                handed = [e.native_id for e in batch.entries]
                prepared = self._prepare(batch)
                with self._cond:
                    self.in_flight.update(handed)
                    weight = self._size(batch, prepared)
                    self._ready.append((batch, prepared, weight))
                    self._queued += weight
                    self._cond.notify_all()
                    # Hold back while enough is queued; a consumer that left never drains.
                    while self._queued >= self._ahead and not self._cancelled:
                        self._cond.wait()
                    if self._cancelled:
                        break
        except BaseException as exc:  # handed to the consumer, raised there
            self._error = exc
        finally:
            close = getattr(self._batches, "close", None)
            if close is not None:  # runs the provider's finally blocks in this thread
                close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[Batch, Any]]:
        """`(batch, prepare(batch))` in yield order; raises what the provider raised, after."""
        for group in self.groups(1):
            yield group[0]

    def groups(
        self,
        limit: int,
        *,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[list[tuple[Batch, Any]]]:
        """Every batch ready when the store asks, up to `limit` in size (at least one batch).

        While the store keeps up, that is one batch; while it lags (a backfill), the pages
        that piled up meanwhile, to commit in one larger transaction. Asking for a batch
        past `deadline` (a `clock()` value), or waiting for one until then, raises
        `PollTimeout`, unless the provider has finished and everything was handed over.
        """
        while True:
            with self._cond:
                while True:
                    late = deadline is not None and clock() >= deadline
                    if late and (self._ready or not self._done):
                        raise PollTimeout()
                    if self._ready or self._done:
                        break
                    if deadline is None:
                        self._cond.wait()
                    else:  # in slices: `clock` is not bound to the condition's own timer
                        self._cond.wait(min(deadline - clock(), 1.0))
                if not self._ready:
                    if self._error is not None:
                        raise self._error
                    return
                batch, prepared, size = self._ready.popleft()
                group = [(batch, prepared)]
                while self._ready and size + self._ready[0][2] <= limit:
                    batch, prepared, weight = self._ready.popleft()
                    group.append((batch, prepared))
                    size += weight
                self._queued -= size
                self._cond.notify_all()
            yield group

    def known(self, native_ids: Sequence[str]) -> set[str]:
        """Which of `native_ids` were handed over and are not yet committed."""
        with self._cond:
            return {i for i in native_ids if i in self.in_flight}

    def committed(self, batch: Batch) -> None:
        """The batch is stored: its ids are no longer in flight."""
        with self._cond:
            self.in_flight.difference_update(e.native_id for e in batch.entries)

    @property
    def alive(self) -> bool:
        """True while the provider's thread runs."""
        return self._thread.is_alive()

    def close(self, timeout: float | None = None) -> bool:
        """Stop fetching, drop what is queued, wait for the provider to wind down (at most
        `timeout` seconds; None: as long as it takes); return whether it did."""
        if not self._thread.is_alive() and not self._done:
            return True  # never started
        with self._cond:
            self._cancelled = True
            self._ready.clear()
            self._queued = 0
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def merge(group: Sequence[tuple[Batch, Any]]) -> tuple[Batch, list[Any]]:
    """One batch standing for `group`: its entries, the last cursor given, summed counts."""
    if len(group) == 1:
        return group[0][0], list(group[0][1] or [])
    entries: list[Entry] = []
    prepared: list[Any] = []
    cursor = total = None
    warnings: list[str] = []
    invalid: list[Invalid] = []
    for batch, prep in group:
        entries.extend(batch.entries)
        prepared.extend(prep or [])
        cursor = batch.cursor if batch.cursor is not None else cursor
        total = batch.total if batch.total is not None else total
        warnings.extend(batch.warnings)
        invalid.extend(batch.invalid)
    pages = sum(b.pages for b, _ in group)
    requests = sum(b.requests for b, _ in group)
    more = group[-1][0].more
    return (
        Batch(entries, cursor, pages, requests, total, warnings, more=more, invalid=invalid),
        prepared,
    )
