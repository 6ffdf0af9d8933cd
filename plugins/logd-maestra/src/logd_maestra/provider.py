"""Maestra operation log export → logd entries.

Each poll exports contiguous, minute-aligned windows `[since, till)` up to `till = now - lag`,
at most `window` long each, and the trailing `reexport` span `[till - reexport, till)` again so
that calls still `processing` get their final status. Both are one span, exported in as few
windows as `window` allows: an idle poll is a single export, not one for the new minutes and a
second for the trailing hour. The cursor `{"since": …}` moves only with the batch that
completes a window reaching past it: a poll stopped mid-export repeats that window, and because
entries are upserted by `OperationLogTransactionId` the repeat doubles nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from logd import (
    Batch,
    Entry,
    Invalid,
    PollContext,
    ProtocolError,
    Provider,
    SourceClient,
    map_record,
    parse_timestamp,
)

from .csvparts import read_part
from .export import SLOTS, Exporter, Flight, Window, read_errors_with
from .options import MaestraOptions
from .records import known_status, row_id, to_entry


class Maestra(Provider[MaestraOptions]):
    """Maestra (formerly Mindbox) operation logs, through the asynchronous export."""

    name = "maestra"
    Options = MaestraOptions
    description = "Maestra (Mindbox) operation log export (POST /v3/operations/sync)"

    def poll(self, ctx: PollContext[MaestraOptions]) -> Iterator[Batch]:
        """Export every window since the cursor, the trailing `reexport` span included."""
        opts = ctx.options
        client = ctx.client
        client.set_credentials({"Authorization": f"SecretKey {opts.secret_key.get_secret_value()}"})
        client.error_text = read_errors_with(client.error_text)
        # Waits between export checks go through the engine: instant in tests, cut short on
        # shutdown.
        exporter = Exporter(client, opts, ctx.log, ctx.sleep, ctx.stopping)

        till = floor_minute(ctx.now() - timedelta(seconds=opts.lag))
        stored = stored_since(ctx.cursor)
        first = floor_minute(till - timedelta(seconds=opts.backfill))
        since = first if stored is None else stored
        if not since < till and stored is None:
            yield Batch([], cursor=cursor_at(since), pages=0)
        # Calls still `processing` finish later, so the trailing `reexport` span is exported
        # again and the store updates what changed. It ends where the new minutes begin, so
        # the two make one span: `[since, till)` reaching back to `till - reexport`, cut only
        # where `window` demands. Every export costs a start, status checks and the parts.
        start = since
        if opts.reexport:
            start = min(since, till - timedelta(seconds=opts.reexport))
        at = since  # the cursor: where the next new window starts, never moved back
        windows = deque(split(start, till, timedelta(seconds=opts.window)))
        flights: list[Flight] = []  # started, oldest window first
        meter = _Meter(ctx.client)
        while windows or flights:
            # Both of the project's export slots: the next window is prepared while this one
            # is read. Windows are read and committed in order, so the cursor never gets
            # ahead of what is stored.
            while windows and len(flights) < SLOTS:
                flight = exporter.launch(windows[0], spare=bool(flights))
                if flight is None:  # another client holds the other slot
                    break
                windows.popleft()
                flights.append(flight)
            head = flights[0]
            urls = exporter.wait_for(head, flights)
            flights.pop(0)
            done = max(at, head.window.till)
            yield from self._export(ctx, head, urls, meter, done=done, kept=at)
            at = done

    def _export(
        self,
        ctx: PollContext[MaestraOptions],
        flight: Flight,
        urls: list[str],
        meter: _Meter,
        *,
        done: datetime,
        kept: datetime,
    ) -> Iterator[Batch]:
        """Batches of one ready export; only the last carries the cursor `done`."""
        export_id = flight.export_id
        ctx.log.info("export %s of %s is ready: %d part(s)", export_id, flight.window, len(urls))
        invalid: list[Invalid] = []  # rows that cannot be mapped: quarantined, not fatal

        def batch(entries: dict[str, Entry], cursor: datetime, warnings: list[str]) -> Batch:
            nonlocal invalid
            bad, invalid = invalid, []
            return Batch(
                list(entries.values()),
                cursor=cursor_at(cursor),
                requests=meter.spent(),
                warnings=warnings,
                invalid=bad,
            )

        pending: dict[str, Entry] = {}
        unknown = 0
        for number, url in enumerate(urls, 1):
            part = f"part {number}/{len(urls)} of export {export_id}"
            # Parts are signed URLs, possibly on another host: never with the secret key.
            with ctx.client.stream(url, credentials=False) as chunks:
                rows = read_part(
                    chunks,
                    part=part,
                    max_row_size=ctx.options.max_row_size,
                    max_part_size=ctx.options.max_part_size,
                )
                for row in rows:
                    entry = map_record(row, to_entry, native_id=row_id)
                    if isinstance(entry, Invalid):
                        invalid.append(entry)
                    else:
                        unknown += not known_status(row)
                        # One id twice in a batch would break the store's upsert; the later
                        # row is the newer word on that call.
                        pending.pop(entry.native_id, None)
                        pending[entry.native_id] = entry
                    if len(pending) + len(invalid) >= ctx.options.batch_size:
                        yield batch(pending, kept, [])
                        pending = {}
        warnings = []
        if unknown:
            warnings.append(
                f"{unknown} row(s) of export {export_id} had an undocumented "
                "OperationLogStatus and are stored as pending"
            )
        yield batch(pending, done, warnings)


class _Meter:
    """Requests spent since the last batch, for `Batch.requests`."""

    def __init__(self, client: SourceClient) -> None:
        self.client = client
        self.seen = client.requests

    def spent(self) -> int:
        """Requests made since the last call."""
        before, self.seen = self.seen, self.client.requests
        return self.seen - before


def floor_minute(when: datetime) -> datetime:
    """`when` in UTC, seconds dropped: the API's precision."""
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def split(since: datetime, till: datetime, step: timedelta) -> list[Window]:
    """Contiguous windows covering `[since, till)`, each at most `step` long."""
    windows = []
    start = since
    while start < till:
        end = min(start + step, till)
        windows.append(Window(start, end))
        start = end
    return windows


def cursor_at(since: datetime) -> dict[str, Any]:
    """The stored cursor: where the next new window starts."""
    return {"since": since.astimezone(UTC).isoformat()}


def stored_since(cursor: Mapping[str, Any] | None) -> datetime | None:
    """The `since` of a stored cursor, minute-aligned; None before the first poll."""
    if not cursor:
        return None
    try:
        return floor_minute(parse_timestamp(cursor["since"]))
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"stored cursor {dict(cursor)!r} has no readable `since`") from None
