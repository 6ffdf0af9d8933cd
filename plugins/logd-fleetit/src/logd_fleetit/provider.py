"""FleetIT integration logs → logd entries.

The API filters by date only (`timestamp_after`, inclusive, server time zone) and does not
document its order, so each poll walks every page of the window that starts `lookback` before
the newest timestamp seen, and the store drops what it already has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from logd import (
    Batch,
    Entry,
    PollContext,
    ProtocolError,
    Provider,
    Status,
    cap_watermark,
    map_records,
    native_id_of,
    parse_timestamp,
)

from .options import FleetITOptions

PAGE_SIZE = 100
PATH = "/v2/integrations/logs/"


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
            # A record that cannot be mapped is quarantined; the rest of the page goes on.
            entries, invalid = map_records(results, to_entry)
            for entry in entries:
                if newest_at is None or entry.timestamp > newest_at:
                    newest, newest_at = str(entry.raw["timestamp"]), entry.timestamp
            next_url = body.get("next")
            if not next_url:
                # Only a completed walk moves the watermark: a walk cut short is walked again.
                # Never past our own clock: a vendor clock days ahead would hide what comes next.
                if newest_at is not None and (capped := cap_watermark(newest_at, ctx.now())) != (
                    newest_at
                ):
                    newest = capped.isoformat()
                yield Batch(
                    entries,
                    cursor={"watermark": newest},
                    requests=1,
                    total=total,
                    more=False,
                    invalid=invalid,
                )
                return
            yield Batch(
                entries,
                cursor={"watermark": watermark},
                requests=1,
                total=total,
                more=True,
                invalid=invalid,
            )
            if not isinstance(next_url, str):
                raise ProtocolError(f"`next` is not a link but {next_url!r:.80}")
            # The vendor's `next` is an http:// URL on an HTTPS API: keep only its paging.
            paging = ctx.client.query_params(next_url, keep=("offset", "limit"))
            offset = paging.get("offset", "")
            if not offset.isdigit():
                raise ProtocolError(f"`next` link without an offset: {next_url!r:.200}")
            params["offset"] = int(offset)


def _results(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ProtocolError("FleetIT answer has no `results` list")
    results: list[dict[str, Any]] = body["results"]
    return results


def to_entry(record: dict[str, Any]) -> Entry:
    """Map one FleetIT log record to an entry (failure: `success` false or `details.error`).

    Raises ProtocolError or ValueError naming the field for a record that cannot be mapped
    (no object, no usable `id` or `timestamp`); `map_records` quarantines it.
    """
    if type(record) is not dict:
        raise ProtocolError(f"FleetIT log record is not an object but {type(record).__name__}")
    if "id" not in record or "timestamp" not in record:
        missing = " and ".join(k for k in ("id", "timestamp") if k not in record)
        raise ProtocolError(f"FleetIT log record without {missing}")
    native_id = native_id_of(record["id"])
    timestamp = parse_timestamp(record["timestamp"])
    details = record.get("details") or {}
    error = details.get("error") if isinstance(details, dict) else None
    response = record.get("response") or {}
    message = response.get("message") if isinstance(response, dict) else None
    failed = record.get("success") is False or bool(error)
    return Entry(
        native_id=native_id,
        timestamp=timestamp,
        status=Status.FAILURE if failed else Status.SUCCESS,
        message=_words(message) or "",
        error=_words(error) if error else None,
        # Numbers (entity type 1 = Ticket, …) and strings; anything else fails in Entry.
        entity_type=_text(record.get("entity_type")),
        entity_id=_text(record.get("entity_id")),
        raw=record,
    )


def _text(value: Any) -> Any:
    """A scalar as text; None, objects and lists as they are (Entry rejects the latter)."""
    if value is None or isinstance(value, str | dict | list):
        return value
    return str(value)


def _words(value: Any) -> str | None:
    """A vendor's message or error as text: objects and lists as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
