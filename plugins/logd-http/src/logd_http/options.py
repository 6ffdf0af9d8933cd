"""The TOML description of an API: pydantic models, every path compiled when the config loads.

Each table forbids unknown keys, so `logd check-config` names a typo with its key path
(`sources[0].paging.cursor.parm: unknown key; did you mean `param`?`). Paths are JMESPath
expressions (`results`, `meta.timestamps.created_at`, `error_detail || body`); a path that
does not compile is an error at its key, not a failure at the first poll.
"""

from __future__ import annotations

import functools
from datetime import tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from logd.config.settings import Duration, Secret
from logd.plugin.provider import ProviderOptions


@functools.lru_cache(maxsize=512)
def compiled(expression: str) -> Any:
    """The compiled JMESPath expression (cached: every record is read through it)."""
    return jmespath.compile(expression)


def _check_path(value: str) -> str:
    """`value` when it compiles as JMESPath, else a `ValueError` saying where it broke."""
    if not value.strip():
        raise ValueError("empty path; use `@` for the whole document")
    try:
        tree = compiled(value).parsed
    except jmespath_errors.IncompleteExpressionError:
        why = "it ends too early"
    except jmespath_errors.LexerError as exc:
        why = f"{exc.message} at character {exc.lexer_position}"
    except jmespath_errors.ParseError as exc:
        why = f"unexpected {exc.token_value!r} at character {exc.lex_position}"
    else:
        unknown = _unknown_functions(tree)
        if not unknown:
            return value
        why = f"no function named {unknown[0]}()"
    raise ValueError(f"{value!r} is not a JMESPath expression: {why}")


def _unknown_functions(node: Any) -> list[str]:
    """Function names JMESPath would refuse only when the expression runs."""
    if not isinstance(node, dict):
        return []
    found = []
    if node.get("type") == "function_expression" and node.get("value") not in _FUNCTIONS:
        found.append(str(node.get("value")))
    for child in node.get("children") or []:
        found += _unknown_functions(child)
    return found


_FUNCTIONS = frozenset(Functions.FUNCTION_TABLE)


#: A JMESPath expression, compiled at load time.
JSONPath = Annotated[str, AfterValidator(_check_path)]

TIMESTAMP_FORMATS = ("iso8601", "epoch_s", "epoch_ms")


def zone(name: str) -> tzinfo:
    """The time zone named `name` (`UTC`, `Europe/Berlin`), or a `ValueError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC)") from None


def _check_zone(value: str | None) -> str | None:
    if value is not None:
        zone(value)
    return value


Zone = Annotated[str, AfterValidator(_check_zone)]


def _path_only(value: Any) -> Any:
    """A bare string is shorthand for `{ path = "…" }`."""
    return {"path": value} if isinstance(value, str) else value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- request ---------------------------------------------------------------------------------


class RequestOptions(_Table):
    """`[sources.request]`: what one page request looks like."""

    path: str = Field("/", description="Path under base_url.")
    method: Literal["GET", "POST"] = Field("GET", description="GET, or POST with `body`.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Static query parameters."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Static headers.")
    body: dict[str, Any] | None = Field(None, description="JSON body template (POST).")
    params_in: Literal["query", "body"] = Field(
        "query",
        description="Where paging and incremental parameters go; `body` names may be dotted.",
    )

    @model_validator(mode="after")
    def _post_only(self) -> RequestOptions:
        if self.method == "GET" and (self.body is not None or self.params_in == "body"):
            raise ValueError('`body` and `params_in = "body"` need method = "POST"')
        if self.path.startswith(("http://", "https://")):
            raise ValueError("`path` is a path under base_url, not a URL")
        return self


# -- auth ------------------------------------------------------------------------------------


class BearerAuth(_Table):
    """A static token sent as `Authorization: Bearer <token>`."""

    token: Secret
    header: str = "Authorization"
    scheme: str = "Bearer"


class BasicAuth(_Table):
    """HTTP basic authentication."""

    username: str
    password: Secret


class ApiKeyAuth(_Table):
    """An API key in a header or a query parameter (base_url's origin only, either way)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(description="Header or query parameter name.")
    value: Secret
    location: Literal["header", "query"] = Field("header", alias="in")


class OAuth2Auth(_Table):
    """OAuth 2 client credentials grant (RFC 6749 §4.4)."""

    token_url: str = Field(description="Path under base_url, or an absolute URL.")
    client_id: Secret
    client_secret: Secret
    scope: str | None = None
    client_auth: Literal["body", "basic"] = Field(
        "body", description="Send the client credentials in the form (body) or as basic auth."
    )
    refresh_margin: Duration = Field(60.0, ge=0, description="Renew this long before expiry.")


class LoginAuth(_Table):
    """A login call whose answer holds a session token; logged in again on a 401."""

    path: str = Field(description="Login path under base_url.")
    method: Literal["POST", "GET"] = "POST"
    username: str | None = None
    password: Secret | None = None
    body: dict[str, Any] = Field(
        default_factory=lambda: {"username": "{username}", "password": "{password}"},
        description="JSON (or form) body; `{username}`/`{password}` in strings are filled in.",
    )
    form: bool = Field(False, description="Send the body as an HTML form instead of JSON.")
    basic: bool = Field(False, description="Also send username and password as basic auth.")
    token: JSONPath | None = Field(
        None, description="Where the token is in the JSON answer; unset: the plain body."
    )
    header: str = "Authorization"
    scheme: str = Field("Bearer", description='Prefix before the token ("" for none).')


class AuthOptions(_Table):
    """`[sources.auth]`: exactly one of its tables."""

    bearer: BearerAuth | None = Field(None, description="`token`, sent as `Bearer <token>`.")
    basic: BasicAuth | None = Field(None, description="`username` and `password`.")
    api_key: ApiKeyAuth | None = Field(
        None, description='`name`, `value`, `in = "header"` or `"query"`.'
    )
    oauth2: OAuth2Auth | None = Field(
        None, description="Client credentials: `token_url`, `client_id`, `client_secret`, `scope`."
    )
    login: LoginAuth | None = Field(
        None, description="A login call: `path`, `username`, `password`, `body`, `token`."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthOptions:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of bearer, basic, api_key, oauth2, login"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self


# -- records ---------------------------------------------------------------------------------


class FieldOptions(_Table):
    """Where one stored field comes from."""

    path: JSONPath
    on_failure: JSONPath | None = Field(
        None, description="Tried when `path` gives nothing and the record is a failure."
    )
    default: str | None = Field(None, description="Used when nothing else gives a value.")
    only_on_failure: bool = Field(False, description="Stored only for failure records.")


class TimestampOptions(_Table):
    """Where a record's time is and how it is written."""

    path: JSONPath
    format: str = Field(
        "iso8601", description="iso8601, epoch_s, epoch_ms, or a strptime pattern with %."
    )
    timezone: Zone = Field("UTC", description="Zone of a time written without an offset.")
    missing: Literal["error", "observed"] = Field(
        "error", description="A record without a time: an error, or stamped when first seen."
    )

    @model_validator(mode="after")
    def _known_format(self) -> TimestampOptions:
        if self.format not in TIMESTAMP_FORMATS and "%" not in self.format:
            raise ValueError(
                f"format {self.format!r}: use iso8601, epoch_s, epoch_ms or a strptime "
                "pattern such as %d.%m.%Y %H:%M"
            )
        return self


Spec = Annotated[FieldOptions, BeforeValidator(_path_only)]


class RecordsOptions(_Table):
    """`[sources.records]`: where the records are in an answer, and each stored field."""

    path: JSONPath = Field(description="The list of records in the answer (`@`: the body).")
    id: Spec = Field(description="The native id (required, unique per source).")
    timestamp: Annotated[TimestampOptions, BeforeValidator(_path_only)] = Field(
        description="A path, or `{ path, format, timezone, missing }`."
    )
    message: Spec | None = Field(None, description="A path, or `{ path, on_failure, default }`.")
    error: Spec | None = Field(
        None, description="Error text; `only_on_failure` keeps it to failures."
    )
    entity_type: Spec | None = Field(None, description="What the call was about (a type).")
    entity_id: Spec | None = Field(None, description="What the call was about (an id).")


# -- status ----------------------------------------------------------------------------------

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "empty", "not empty"]
UNARY = ("empty", "not empty")


class StatusRule(_Table):
    """`[[sources.status]]`: when `path` `op` `value` holds, the record has `status`."""

    path: JSONPath = Field(description="The value the rule looks at.")
    op: Operator = Field(description="How it is compared.")
    value: Any = Field(None, description="Compared with (a list for `in`; none for empty).")
    status: Literal["failure", "pending", "success"] = Field(description="The status it gives.")

    @model_validator(mode="after")
    def _operand(self) -> StatusRule:
        if self.op in UNARY and self.value is not None:
            raise ValueError(f"op {self.op!r} takes no `value`")
        if self.op not in UNARY and self.value is None:
            raise ValueError(f"op {self.op!r} needs a `value`")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list `value`")
        return self


# -- paging ----------------------------------------------------------------------------------


class OffsetPaging(_Table):
    """`offset`/`limit` parameters; stops at an empty page or when `total` is reached."""

    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, ge=1)
    start: int = Field(0, ge=0)
    total: JSONPath | None = Field(None, description="Records in all, from the answer.")


class PagePaging(_Table):
    """A page number parameter; stops at an empty page or the last page."""

    page_param: str = "page"
    size_param: str = Field("per_page", description='Page size parameter ("": none).')
    size: int = Field(100, ge=1)
    first: int = Field(1, ge=0)
    total: JSONPath | None = Field(None, description="Records in all, from the answer.")
    total_pages: JSONPath | None = Field(None, description="Pages in all, from the answer.")


class CursorPaging(_Table):
    """A cursor token from the answer, sent back as a parameter; stops when there is none."""

    path: JSONPath = Field(description="Where the next page's token is in the answer.")
    param: str = Field("cursor", description="The parameter that carries it.")


class NextURLPaging(_Table):
    """A `next` URL in the answer; only its query parameters are sent, on base_url."""

    path: JSONPath = Field(description="Where the next page's URL is in the answer.")


class LinkPaging(_Table):
    """RFC 8288 `Link` headers; another origin's link gives only its query parameters."""

    rel: str = "next"


class PagingOptions(_Table):
    """`[sources.paging]`: exactly one style."""

    offset: OffsetPaging | None = Field(None, description="Offset and limit parameters.")
    page: PagePaging | None = Field(None, description="A page number parameter.")
    cursor: CursorPaging | None = Field(None, description="A token from the answer.")
    next_url: NextURLPaging | None = Field(None, description="A next-page URL in the answer.")
    link: LinkPaging | None = Field(None, description='RFC 8288 `Link: <…>; rel="next"`.')

    @model_validator(mode="after")
    def _exactly_one(self) -> PagingOptions:
        given = [n for n in ("offset", "page", "cursor", "next_url", "link") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one paging style of offset, page, cursor, next_url, link"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    @property
    def style(self) -> OffsetPaging | PagePaging | CursorPaging | NextURLPaging | LinkPaging:
        """The one configured style."""
        for name in ("offset", "page", "cursor", "next_url", "link"):
            value = getattr(self, name)
            if value is not None:
                return value  # type: ignore[no-any-return]
        raise AssertionError("validated: one style is set")


# -- incremental -----------------------------------------------------------------------------


class IncrementalOptions(_Table):
    """`[sources.incremental]`: what each poll asks for, and what the cursor remembers."""

    param: str | None = Field(
        None, description="Request parameter filled from the cursor; unset: no filter."
    )
    value: Literal["timestamp", "id"] = Field(
        "timestamp", description="Fill it with the newest timestamp or the largest id seen."
    )
    format: Literal["iso", "date", "epoch_s", "epoch_ms"] = Field(
        "iso", description="How a timestamp is written into the parameter."
    )
    timezone: Zone | None = Field(
        None, description="Convert the timestamp to this zone first (default: as the API sent)."
    )
    lookback: Duration = Field(0.0, ge=0, description="Ask from this long before the newest.")
    order: Literal["newest_first", "oldest_first", "unknown"] = Field(
        "unknown",
        description="The API's order: newest_first stops at a stored id; unknown walks all.",
    )
    skip_unchanged: bool = Field(
        False,
        description="One request when the answer's total equals the last walk's and its "
        "first page is all stored (needs a paging `total`).",
    )


class HTTPOptions(ProviderOptions):
    """The `[[sources]]` keys of an `http` source."""

    base_url: str = Field(description="API root; credentials go to its origin only.")
    request: RequestOptions = Field(
        default_factory=RequestOptions, description="What a page request looks like."
    )
    auth: AuthOptions | None = Field(None, description="Credentials (one kind).")
    records: RecordsOptions = Field(description="Where records are, and each stored field.")
    status: list[StatusRule] = Field(
        default_factory=list, description="Rules in order, the first that holds wins (success)."
    )
    paging: PagingOptions | None = Field(None, description="One paging style; none: one page.")
    incremental: IncrementalOptions = Field(
        default_factory=IncrementalOptions, description="What the cursor remembers and asks."
    )

    @model_validator(mode="after")
    def _consistent(self) -> HTTPOptions:
        style = self.paging.style if self.paging else None
        if self.incremental.skip_unchanged and not (
            isinstance(style, OffsetPaging | PagePaging) and style.total
        ):
            raise ValueError("incremental.skip_unchanged needs paging.offset.total or page.total")
        return self
