"""The `[[sources]]` keys of an `elasticpath` source, validated once."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field

from logd.config.settings import Duration, Secret
from logd.plugin.provider import ProviderOptions


class ElasticPathOptions(ProviderOptions):
    """The `[[sources]]` keys of an `elasticpath` source."""

    base_url: str = Field(
        "https://useast.api.elasticpath.com",
        description="API root (`https://euwest.api.elasticpath.com` for the EU region).",
    )
    client_id: Secret = Field(description="OAuth client id of the store's client credentials.")
    client_secret: Secret = Field(description="OAuth client secret.")
    integrations: Annotated[list[UUID], Field(min_length=1)] | None = Field(
        None, description="Poll only these integrations' logs; default: the whole store's."
    )
    token_refresh_margin: Duration = Field(
        60.0, ge=0, description="Get a new access token this long before the old one expires."
    )
