"""The `[[sources]]` keys of a `fleetit` source, validated once."""

from __future__ import annotations

from pydantic import Field

from logd import Duration, ProviderOptions, Secret


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
