"""The `[[sources]]` keys of a `maestra` source, validated once."""

from __future__ import annotations

from typing import Literal

from pydantic import ByteSize, Field, field_validator

from logd import Duration, ProviderOptions, Secret

from .csvparts import MAX_PART_SIZE, MAX_ROW_SIZE

#: The API's time precision: windows are whole minutes.
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
    export_poll: Duration = Field(
        5.0, gt=0, description="Longest wait between export status checks (1 s, doubling)."
    )
    export_timeout: Duration = Field(1800.0, gt=0, description="Give up on one export after this.")
    backfill: Duration = Field(7 * 86400.0, ge=0, description="How far back the first poll goes.")
    # Two days: a 7-day backfill is four exports, two rounds of the two export slots.
    window: Duration = Field(2 * 86400.0, ge=MINUTE, description="Longest span of one export.")
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
