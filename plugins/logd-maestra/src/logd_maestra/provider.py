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

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ByteSize, Field, field_validator

from logd import (
    Batch,
    Duration,
    Entry,
    PollContext,
    ProtocolError,
    Provider,
    ProviderOptions,
    Secret,
    parse_timestamp,
)

from .csvparts import MAX_PART_SIZE, MAX_ROW_SIZE, read_part
from .export import Exporter, Window, read_errors_with
from .records import known_status, to_entry

MINUTE = 60.0


class MaestraOptions(ProviderOptions):
    """The `[[sources]]` keys of a `maestra` source."""

    base_url: str = Field("https://api.maestra.io", description="API root.")
    endpoint_id: str = Field(min_length=1, description="Integration endpoint (`endpointId`).")
    secret_key: Secret = Field(description="Sent as `Authorization: SecretKey <key>`.")
    operation: str = Field(
        min_length=1, description='API method with the "Export — Export Webhook Logs" step.'
    )
    operations: list[str] | None = Field(
        None, min_length=1, description="Only calls of these API methods (system names)."
    )
    endpoint_external_id: str | None = Field(
        None, description="Only calls made through this integration endpoint (external id)."
    )
    result_state: Literal["completed", "failed", "processing"] | None = Field(
        None, description="Only calls in this state (`resultState`)."
    )
    has_errors: bool | None = Field(None, description="Only calls with (true) or without errors.")
    lag: Duration = Field(600.0, ge=0, description="`till` is this long before now.")
    reexport: Duration = Field(3600.0, ge=0, description="Export this trailing span again.")
    export_poll: Duration = Field(5.0, gt=0, description="Wait between export status checks.")
    export_timeout: Duration = Field(1800.0, gt=0, description="Give up on one export after this.")
    backfill: Duration = Field(7 * 86400.0, ge=0, description="How far back the first poll goes.")
    window: Duration = Field(86400.0, ge=MINUTE, description="Longest span of one export.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Rows committed per batch.")
    max_row_size: ByteSize = Field(
        ByteSize(MAX_ROW_SIZE),
        gt=0,
        description="Longest CSV row of a part, in characters; a longer one is an error.",
    )
    max_part_size: ByteSize = Field(
        ByteSize(MAX_PART_SIZE),
        gt=0,
        description="Most bytes a gzipped part may decompress to; more is an error.",
    )

    @field_validator("window")
    @classmethod
    def _whole_minutes(cls, value: float) -> float:
        # The API takes minute-precise times, so a window must be a whole number of minutes.
        if value % MINUTE:
            raise ValueError("must be a whole number of minutes, such as 30m, 6h or 1d")
        return value


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
        for window in split(start, till, timedelta(seconds=opts.window)):
            done = max(at, window.till)
            yield from self._export(ctx, exporter, window, done=done, kept=at)
            at = done

    def _export(
        self,
        ctx: PollContext[MaestraOptions],
        exporter: Exporter,
        window: Window,
        *,
        done: datetime,
        kept: datetime,
    ) -> Iterator[Batch]:
        """Batches of one window's export; only the last carries the cursor `done`."""
        requests_before = ctx.client.requests
        export_id = exporter.start(window)
        urls = exporter.wait_until_ready(export_id, window)
        ctx.log.info("export %s of %s is ready: %d part(s)", export_id, window, len(urls))

        def batch(entries: dict[str, Entry], cursor: datetime, warnings: list[str]) -> Batch:
            nonlocal requests_before
            spent, requests_before = ctx.client.requests - requests_before, ctx.client.requests
            return Batch(
                list(entries.values()), cursor=cursor_at(cursor), requests=spent, warnings=warnings
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
                    entry = to_entry(row)
                    unknown += not known_status(row)
                    # One id twice in a batch would break the store's upsert; the later row
                    # is the newer word on that call.
                    pending.pop(entry.native_id, None)
                    pending[entry.native_id] = entry
                    if len(pending) >= ctx.options.batch_size:
                        yield batch(pending, kept, [])
                        pending = {}
        warnings = []
        if unknown:
            warnings.append(
                f"{unknown} row(s) of export {export_id} had an undocumented "
                "OperationLogStatus and are stored as pending"
            )
        yield batch(pending, done, warnings)


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
