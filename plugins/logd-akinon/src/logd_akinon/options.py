"""The `[[sources]]` keys of an `akinon` source, validated once."""

from __future__ import annotations

from datetime import tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from logd import Duration, ProviderOptions, Secret

LogType = Literal[1, 2, 3]


def _main_logs() -> list[LogType]:
    return [1]


class AkinonOptions(ProviderOptions):
    """The `[[sources]]` keys of an `akinon` source."""

    base_url: str = Field("https://flow.entegrator.akinon.net:3000", description="API root.")
    username: Secret | None = Field(None, description="Login account (with `password`).")
    password: Secret | None = Field(None, description="Login password (with `username`).")
    token: Secret | None = Field(None, description="A ready token instead of logging in.")
    project_id: str = Field(description="Sent as `projectid`.")
    project_slug: str | None = Field(None, description="Sent as `projectslug` to downloads.")
    flow_ids: list[str] = Field(min_length=1, description="Flows whose logs are read.")
    log_types: list[LogType] = Field(
        default_factory=lambda: _main_logs(),
        min_length=1,
        description="1 main, 2 sub, 3 line logs.",
    )
    download_failed: bool = Field(True, description="Download the log file of failed main logs.")
    line_logs: bool = Field(False, description="Fetch the line logs of failed main logs.")
    overlap: Duration = Field(3600.0, ge=0, description="Re-read this far before the watermark.")
    recheck_for: Duration = Field(
        7 * 86400.0, gt=0, description="Stop re-checking a log still unfinished after this long."
    )
    timezone: str = Field("UTC", description="Zone of datetime strings without an offset.")

    @field_validator("log_types")
    @classmethod
    def _dedupe(cls, value: list[LogType]) -> list[LogType]:
        return list(dict.fromkeys(value))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name (UTC)") from None
        return value

    @model_validator(mode="after")
    def _credentials(self) -> AkinonOptions:
        login = self.username is not None or self.password is not None
        if self.token is not None and login:
            raise ValueError("set either `token` or `username` and `password`, not both")
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("set `username` and `password` (or `token`)")
        if self.download_failed and not self.project_slug:
            raise ValueError("`project_slug` is needed for downloads (or download_failed = false)")
        return self

    @property
    def tz(self) -> tzinfo:
        """The zone naive datetime strings are read in."""
        return ZoneInfo(self.timezone)
