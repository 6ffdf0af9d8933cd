"""The `[[sources]]` keys of a `pegasus` source (and its modification items), validated once."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from logd import Duration, ProviderOptions, Secret

Resource = Literal["vehicles", "assets", "geofences", "geofence_types"]


class Modification(BaseModel):
    """One `[[sources.modifications]]` item: a resource whose field changes are walked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource: Resource = Field(description="vehicles, assets, geofences or geofence_types.")
    changes: list[str] = Field(
        default_factory=list, description="Only these flattened fields; empty: every change."
    )
    ids: list[int | str] = Field(default_factory=list, description="Only these resource ids.")
    groups: list[int | str] = Field(default_factory=list, description="Only these group ids.")

    def params(self) -> dict[str, str]:
        """The item's query parameters; empty lists are left out."""
        params: dict[str, str] = {"resource": self.resource}
        for name in ("changes", "ids", "groups"):
            values = getattr(self, name)
            if values:
                params[name] = ",".join(str(v) for v in values)
        return params

    @property
    def key(self) -> str:
        """Where the item's watermark lives in the cursor: its query, so an edited item restarts."""
        return urlencode(self.params())


class PegasusOptions(ProviderOptions):
    """The `[[sources]]` keys of a `pegasus` source."""

    base_url: str = Field(
        description="The site's API root, e.g. https://pegasus1.pegasusgateway.com/api."
    )
    token: Secret | None = Field(None, description="API token sent as `Authenticate`.")
    username: str | None = Field(None, description="Login user, instead of `token`.")
    password: Secret | None = Field(None, description="Login password, with `username`.")
    methods: list[str] = Field(default_factory=list, description="Only these HTTP methods.")
    path: str | None = Field(None, description="Only paths matching this regex.")
    user_ids: list[int | str] = Field(
        default_factory=list, description="Only these user ids (plain ids, not scoped strings)."
    )
    modifications: list[Modification] = Field(
        default_factory=list, description="Resources whose modifications are walked too."
    )
    overlap: Duration = Field(
        300.0, ge=0, description="Tolerance below the watermark for late-written records."
    )
    modifications_backfill: Duration = Field(
        30 * 86400.0, gt=0, description="How far back the first modifications window starts."
    )

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # `token = ""` (say, an unset variable templated in) means "log in instead".
        return value if value is not None and value.get_secret_value() else None

    @field_validator("user_ids")
    @classmethod
    def _no_commas(cls, values: list[int | str]) -> list[int | str]:
        for value in values:
            if "," in str(value):
                # The query joins ids with commas, so a scoped user string cannot be sent.
                raise ValueError(f"{value!r}: give the plain user id (e.g. 16), not a scoped user")
        return values

    @model_validator(mode="after")
    def _one_credential(self) -> PegasusOptions:
        has_login = bool(self.username) and self.password is not None
        if self.token is not None and (self.username or self.password):
            raise ValueError("set either `token` or `username`/`password`, not both")
        if self.token is None and not has_login:
            raise ValueError("set `token`, or both `username` and `password`")
        return self
