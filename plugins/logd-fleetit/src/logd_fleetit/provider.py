"""FleetIT integration logs → logd entries.

The API filters by date only (`timestamp_after`, inclusive, server time zone) and does not
document its order, so each poll walks every page of the window that starts `lookback` before
the newest timestamp seen, and the store drops what it already has.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from pydantic import Field

from logd import (
    Batch,
    Duration,
    Entry,
    PollContext,
    ProtocolError,
    Provider,
    ProviderOptions,
    Secret,
    Status,
    parse_timestamp,
)

PAGE_SIZE = 100
PATH = "/v2/integrations/logs/"


class FleetITOptions(ProviderOptions):
    """The `[[sources]]` keys of a `fleetit` source."""

    base_url: str = Field("https://api.app.fleetit.com", description="API root.")
    token: Secret = Field(description="API token, sent as `Authorization: Bearer`.")
    fleet_id: str | None = Field(None, description="Sent as `Fleet-Id`; default: the user's fleet.")
    integration: str | None = Field(None, description="Only logs of this integration id.")
    entity_type: int | None = Field(
        None, description="Only this entity type (1 Ticket, 2 Parking, 3 Violation, 4 Vehicle, …)."
    )
    success: bool | None = Field(None, description="Only successful (true) or failed (false) logs.")
    lookback: Duration = Field(
        86400.0, ge=0, description="Re-read this far before the newest entry."
    )


class FleetIT(Provider[FleetITOptions]):
    """FleetIT integration logs."""

    name = "fleetit"
    Options = FleetITOptions
    description = "FleetIT integration logs (GET /v2/integrations/logs/)"

    def poll(self, ctx: PollContext[FleetITOptions]) -> Iterator[Batch]:
        """Walk every page of the date window from the watermark minus `lookback`."""
        opts = ctx.options
        headers = {"Authorization": f"Bearer {opts.token.get_secret_value()}"}
        if opts.fleet_id:
            headers["Fleet-Id"] = opts.fleet_id
        ctx.client.set_credentials(headers)

        watermark = (ctx.cursor or {}).get("watermark")
        params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": 0}
        for key in ("integration", "entity_type"):
            if getattr(opts, key) is not None:
                params[key] = getattr(opts, key)
        if opts.success is not None:
            params["success"] = "true" if opts.success else "false"
        if watermark:
            # Date in the server's zone: the watermark keeps the offset the server sent.
            start = parse_timestamp(watermark) - timedelta(seconds=opts.lookback)
            params["timestamp_after"] = start.date().isoformat()

        newest = watermark
        newest_at = parse_timestamp(watermark) if watermark else None
        while True:
            body = ctx.client.get_json(PATH, params=params)
            results = _results(body)
            total = body.get("count") if isinstance(body.get("count"), int) else None
            entries = [to_entry(record) for record in results]
            for record, entry in zip(results, entries, strict=True):
                if newest_at is None or entry.timestamp > newest_at:
                    newest, newest_at = str(record["timestamp"]), entry.timestamp
            next_url = body.get("next")
            if not next_url:
                # Only a completed walk moves the watermark: a walk cut short is walked again.
                yield Batch(
                    entries, cursor={"watermark": newest}, requests=1, total=total, more=False
                )
                return
            yield Batch(
                entries, cursor={"watermark": watermark}, requests=1, total=total, more=True
            )
            # The vendor's `next` is an http:// URL on an HTTPS API: keep only its paging.
            paging = ctx.client.query_params(next_url, keep=("offset", "limit"))
            if "offset" not in paging:
                raise ProtocolError(f"`next` link without an offset: {next_url!r}")
            params["offset"] = int(paging["offset"])


def _results(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ProtocolError("FleetIT answer has no `results` list")
    results: list[dict[str, Any]] = body["results"]
    return results


def to_entry(record: dict[str, Any]) -> Entry:
    """Map one FleetIT log record to an entry (failure: `success` false or `details.error`)."""
    try:
        native_id = record["id"]
        timestamp = parse_timestamp(record["timestamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"FleetIT log record without a usable id/timestamp: {exc}") from None
    details = record.get("details") or {}
    error = details.get("error") if isinstance(details, dict) else None
    response = record.get("response") or {}
    message = response.get("message") if isinstance(response, dict) else None
    failed = record.get("success") is False or bool(error)
    entity_id = record.get("entity_id")
    return Entry(
        native_id=str(native_id),
        timestamp=timestamp,
        status=Status.FAILURE if failed else Status.SUCCESS,
        message=str(message or ""),
        error=str(error) if error else None,
        entity_type=record.get("entity_type"),
        entity_id=None if entity_id is None else str(entity_id),
        raw=record,
    )
