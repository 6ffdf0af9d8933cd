"""The TOML configuration, as pydantic models, and how it is found and loaded.

The file is `-c/--config`, else `$LOGD_CONFIG`, else `/etc/logd/config.toml`. `LOGD_DATABASE`
and `LOGD_LOG_LEVEL` override the file. Each `[[sources]]` table holds the common keys below
plus its provider's own keys, validated by that provider's options model; every error names
the file and the key path (`sources[2].token`).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The path rules live in .paths, which the read commands import without pydantic; the
# names stay importable from here.
from logd.config.paths import DEFAULT_CONFIG as DEFAULT_CONFIG
from logd.config.paths import DEFAULT_CREDENTIALS_DIR as DEFAULT_CREDENTIALS_DIR
from logd.config.paths import (
    LOG_LEVELS,
    Database,
    DatabaseURL,
    _credentials_dir,
    beside,
    config_exists,
    database_value,
    default_database,
    env_log_level,
    missing_config,
    read_toml,
    resolve_secret,
)
from logd.config.paths import config_path as config_path
from logd.config.paths import database_path as database_path
from logd.errors import ConfigError, PluginError
from logd.plugin.provider import ProviderOptions
from logd.plugin.ratelimit import parse_rate
from logd.timeparse import parse_duration

LogLevel = Literal["debug", "info", "warning", "error"]


def _resolve_secret(value: Any) -> Any:
    """A literal string, `{ env = "VAR" }` or `{ file = "/path" }` (`paths.resolve_secret`)."""
    return value if isinstance(value, SecretStr) else resolve_secret(value)


def _database(value: Any) -> Database:
    """`database`: a SQLite file path, or a PostgreSQL URL (which may come from a secret)."""
    if isinstance(value, Path | DatabaseURL):
        return value
    if isinstance(value, dict):
        value = resolve_secret(value)
    # An empty string would be the directory logd starts in, not a file.
    if isinstance(value, str) and value:
        return database_value(value)
    raise ValueError(f"must be a file path or a postgresql:// URL, not {value!r}")


#: A credential: resolved from a literal, an environment variable or a file; never printed.
Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
#: Seconds, from an int or a string such as "30s", "5m", "1h", "1d".
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: Requests per second, from a number or a string such as "10/s", "600/m", "3600/h".
Rate = Annotated[float, BeforeValidator(parse_rate)]


def parse_listen(value: str) -> tuple[str, int]:
    """`"127.0.0.1:9464"` or `"[::1]:9464"` → (host, port); a bare `":9464"` means localhost."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as 127.0.0.1:9464, got {value!r}")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


#: An address to listen on, `host:port`.
Listen = Annotated[str, AfterValidator(_check_listen)]


class RetryConfig(BaseModel):
    """How a source's HTTP requests are retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(5, ge=1, le=20, description="Tries per request, the first included.")
    max_wait: Duration = Field(
        60.0, gt=0, description="Longest wait between tries, Retry-After included."
    )


class SourceConfig(BaseModel):
    """One `[[sources]]` table: the common keys; the provider's keys land in `options`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Unique name; entry ids are `{name}:{native id}`.",
    )
    provider: str = Field(description="Provider plugin that reads this source (`logd plugins`).")
    interval: Duration = Field(300.0, gt=0, description="Seconds between polls in the daemon.")
    enabled: bool = Field(True, description="Disabled sources are neither synced nor scheduled.")
    timeout: Duration = Field(
        30.0, gt=0, description="Longest one HTTP request may take, body included."
    )
    max_response_size: ByteSize = Field(
        ByteSize(4 * 1024 * 1024),  # logd.http.DEFAULT_MAX_RESPONSE_BYTES
        gt=0,
        description='Largest response body, decoded ("4MiB", "512KiB"); a bigger one is an error.',
    )
    download_timeout: Duration = Field(
        3600.0,  # logd.http.DEFAULT_DOWNLOAD_TIMEOUT
        gt=0,
        description="Longest one file download (an export part) may take; each wait for data "
        "is bounded by `timeout`, and under 1 KiB/s over any `timeout`-long stretch is a stall.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retry policy.")
    max_pages: int = Field(
        100_000,
        ge=1,
        description="Most pages one poll may walk: a ceiling for paging that never ends "
        "(100,000 pages of 100 is a 10M-record backfill).",
    )
    poll_timeout: Duration | None = Field(
        None,
        gt=0,
        description="Longest a poll may run before it is stopped and recorded as failed; "
        "default: 1 hour, or 4 intervals when that is longer.",
    )
    max_rate: Rate | None = Field(
        None,
        description='Most requests sent, as "10/s", "600/m" or "3600/h", evenly spaced; '
        '"off" for none; default: the provider\'s (Elastic Path: 20/s), else none.',
    )
    rate_group: str | None = Field(
        None,
        min_length=1,
        description="Sources naming the same group share one request budget, the lowest "
        "max_rate of theirs, within one daemon or sync; default: the source's own.",
    )

    _options: ProviderOptions | None = PrivateAttr(default=None)

    @property
    def options(self) -> ProviderOptions:
        """The provider's own keys, validated by its options model."""
        if self._options is None:
            raise RuntimeError(f"source {self.name}: options not validated")
        return self._options

    @property
    def poll_deadline(self) -> float:
        """Seconds a poll may run: `poll_timeout`, else max(1 h, 4 intervals).

        An hour lets a first backfill of ~1M records at 100 a page finish at 3 requests/s,
        while a stuck poll ends well before it could miss many of its own intervals.
        """
        if self.poll_timeout is not None:
            return self.poll_timeout
        return max(3600.0, 4 * self.interval)

    def provider_keys(self) -> dict[str, Any]:
        """The keys of this table that are not common keys (the provider's own)."""
        return dict(self.model_extra or {})


class WebhookConfig(BaseModel):
    """One `[[webhooks]]` table: where new failures are sent, and which ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Unique name, shown in status."
    )
    url: str = Field(description="https:// endpoint (http:// only for loopback or allow_insecure).")
    secret: Secret = Field(description="HMAC key; for standard-webhooks a base64 `whsec_…` key.")
    sources: list[str] | None = Field(None, description="Only these sources (default: all).")
    match: str | None = Field(
        None, description="Search (`logd query --fts` language) an entry must match to be sent."
    )
    max_age: Duration | None = Field(
        None, gt=0, description="Failures older than this (by entry time) are never sent."
    )
    alert_backfill: bool = Field(
        False,
        description="Also send failures found by a source's first poll (its backfill of "
        "history); by default those are stored, not sent.",
    )
    max_entries: int = Field(100, ge=1, le=10_000, description="Entries per delivery.")
    headers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Extra request headers (values are secrets: they often carry tokens).",
    )
    signature: Literal["fleetit", "standard-webhooks"] = Field(
        "fleetit", description="Signature scheme: FleetIT's X-Signature or Standard Webhooks."
    )
    timeout: Duration = Field(
        10.0, gt=0, description="Whole-request timeout: connect, send, the whole answer."
    )
    retry_for: Duration = Field(
        86_400.0, gt=0, description="Keep retrying this long after queueing, then dead."
    )
    allow_insecure: bool = Field(False, description="Allow http:// to a non-loopback host.")

    @property
    def host(self) -> str:
        """Scheme, host and port of `url`: safe to print where the whole URL is not."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


# -- exports: every stored entry sent on to another system (docs/otlp.md) -----------------


class OtlpExportConfig(BaseModel):
    """One `[[exports]]` table with `kind = "otlp"`: every stored entry, and each later change
    of one, sent to an OpenTelemetry collector as a log record over OTLP/HTTP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["otlp"] = Field(description="What the export speaks: `otlp` (OTLP/HTTP logs).")
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Unique name; how far the export got is kept under it.",
    )
    endpoint: str = Field(
        description="The collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is for "
        "OpenTelemetry SDKs (`http://127.0.0.1:4318`); records go to `{endpoint}/v1/logs`."
    )
    headers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Request headers, such as the backend's API key (values are secrets).",
    )
    format: Literal["protobuf", "json"] = Field(
        "protobuf", description="OTLP/HTTP encoding: binary protobuf, or OTLP/JSON."
    )
    compression: Literal["gzip", "none"] = Field(
        "none", description="Request body compression (the OpenTelemetry SDKs' default: none)."
    )
    timeout: Duration = Field(
        10.0, gt=0, description="Whole-request timeout: connect, send, the whole answer."
    )
    batch_size: int = Field(
        512, ge=1, le=10_000, description="Records per request, at most (fewer when large)."
    )
    allow_insecure: bool = Field(False, description="Allow http:// to a non-loopback host.")

    @property
    def host(self) -> str:
        """Scheme, host and port of `endpoint`: safe to print where the whole URL is not."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def export_problems(exports: Sequence[OtlpExportConfig | None]) -> list[str]:
    """The cross-key problems of the `[[exports]]` tables that validated (None: one that did
    not), one line each with its key path."""
    from logd.config.webhooks import url_problem

    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, export in enumerate(exports):
        if export is None:
            continue
        key = f"exports[{i}]"
        if export.name in seen:
            problems.append(
                f"{key}.name: {export.name!r} is already used by exports[{seen[export.name]}]"
            )
        seen.setdefault(export.name, i)
        why = url_problem(export.endpoint, export.allow_insecure)
        path = urlsplit(export.endpoint).path.rstrip("/")
        if why is None and path.endswith("/v1/logs"):
            why = "must be the collector's base URL: leave out /v1/logs (logd adds it)"
        if why is None and urlsplit(export.endpoint).query:
            why = "must not have a query string (put credentials in `headers`)"
        if why:
            problems.append(f"{key}.endpoint: {why}")
        for header in export.headers:
            if header.lower() in _EXPORT_RESERVED_HEADERS:
                problems.append(f"{key}.headers: {header!r} is set by logd; it cannot be replaced")
    return problems


#: Headers the exporter sets from `format` and `compression`, or that HTTP itself owns.
_EXPORT_RESERVED_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-length", "transfer-encoding", "host"}
)


_toml_data: ContextVar[dict[str, Any]] = ContextVar("toml_data")


class _OverrideEnv(EnvSettingsSource):
    """Only `LOGD_DATABASE` and `LOGD_LOG_LEVEL` come from the environment.

    A `LOGD_LOG_LEVEL` that is no level is left out here: `load_settings` reports it under
    the variable's name, not as the file's `log_level`.
    """

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        out = {k: v for k, v in values.items() if k in ("database", "log_level")}
        if "log_level" in out:
            level = str(out.pop("log_level")).strip().lower()
            if level in LOG_LEVELS:
                out["log_level"] = level
        return out


class _ParsedToml(PydanticBaseSettingsSource):
    """The file as `read_toml` parsed it: read once, so every decoding error is one line."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` hands over the whole table."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class Settings(BaseSettings):
    """The whole configuration file."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="LOGD_", frozen=True)

    database: Annotated[Database, PlainValidator(_database), WithJsonSchema({"type": "string"})] = (
        Field(
            default_factory=default_database,
            description="SQLite file (default $STATE_DIRECTORY/logd.db, else "
            "/var/lib/logd/logd.db), or a postgresql:// URL (a secret: a literal, "
            '{ env = "VAR" } or { file = "/path" }) for a store several daemons share.',
        )
    )
    log_level: LogLevel = Field("info", description="debug, info, warning or error.")
    lease_ttl: Duration = Field(
        30.0,
        gt=0,
        description="Daemons sharing a PostgreSQL store: how long a daemon's hold on a source "
        "(or export) outlives its last renewal, every third of it; after a crash, another "
        "daemon takes the source over that much later.",
    )
    retention: Duration | None = Field(
        None,
        gt=0,
        description="The daemon deletes entries older than this (by entry time), daily; "
        "default: keep everything.",
    )
    metrics_listen: Listen | None = Field(
        None, description='Serve Prometheus metrics on "host:port" (daemon only); default: off.'
    )
    sources: list[SourceConfig] = Field(default_factory=list, description="The sources to poll.")
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Where new failures are sent."
    )
    exports: list[OtlpExportConfig] = Field(
        default_factory=list,
        description="Where every stored entry is also sent (OTLP); see docs/otlp.md.",
    )

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What is valid but unsafe (a literal secret in a file others can read), one line each."""
        return self._warnings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init values, then `LOGD_DATABASE`/`LOGD_LOG_LEVEL`, then the TOML file."""
        return (init_settings, _OverrideEnv(settings_cls), _ParsedToml(settings_cls))

    def source(self, name: str) -> SourceConfig:
        """The source called `name`, or a `ConfigError` listing the configured ones."""
        for src in self.sources:
            if src.name == name:
                return src
        names = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config; configured: {names}")


def format_loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`("sources", 2, "token")` → `sources[2].token`."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys sit at `path` below `model` (`("sources", 0)` → SourceConfig)."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as `list[X]`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is Annotated:
        return _model_in(typing.get_args(annotation)[0])
    for arg in typing.get_args(annotation):
        if arg is not type(None) and not isinstance(arg, types.EllipsisType):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def did_you_mean(key: str, known: Iterator[str] | list[str] | set[str]) -> str:
    """`"; did you mean `database`?"` for a close known key, else an empty string."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def _problems(
    exc: ValidationError,
    model: type[BaseModel],
    prefix: str = "",
    also_known: tuple[str, ...] = (),
) -> list[str]:
    """One line per error; an unknown key gets the closest known key of its table."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            parent = _model_at(model, loc[:-1])
            known = set(parent.model_fields) if parent is not None else set()
            if len(loc) == 1:
                known |= set(also_known)
            msg = "unknown key" + did_you_mean(loc[-1], known)
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{format_loc(loc, prefix)}: {msg}")
    return lines


def _order(line: str) -> tuple[int, int]:
    """Sort key: top-level keys first, then each source, webhook and export, by index."""
    match = re.match(r"(sources|webhooks|exports)\[(\d+)\]", line)
    if match is None:
        return (0, 0)
    return (("sources", "webhooks", "exports").index(match.group(1)) + 1, int(match.group(2)))


@contextmanager
def credentials_directory(directory: Path | None) -> Iterator[None]:
    """Resolve `${CREDENTIALS_DIRECTORY}` as `directory` while it is unset (`check-config`)."""
    token = _credentials_dir.set(directory)
    try:
        yield
    finally:
        _credentials_dir.reset(token)


def load_settings(path: str | Path | None = None, *, named_plugins: bool = False) -> Settings:
    """Read and validate the config file, provider options included (plugins are loaded).

    Every problem of the file is reported at once, one line each, in one `ConfigError`:
    the top-level keys, each source's common and provider keys and each
    webhook are validated whether or not another part failed. `named_plugins`: load only
    the plugins named after the configured providers (`load_plugins(providers=…)`); `logd
    sync` starts faster for it.
    """
    file = config_path(path)
    if not config_exists(file):
        raise missing_config(file)
    data = read_toml(file)  # one line for any file that is not UTF-8 TOML

    problems: list[str] = []
    try:
        env_log_level()
    except ConfigError as exc:
        problems.append(str(exc))
    token = _toml_data.set(data)
    settings: Settings | None
    try:
        settings = Settings()
    except ValidationError as exc:
        settings = None
        problems.extend(_problems(exc, Settings))
    finally:
        _toml_data.reset(token)

    options, source_problems = _provider_options(data, named_plugins=named_plugins)
    problems.extend(source_problems)

    from logd.config.webhooks import hook_problems

    if settings is not None:
        problems.extend(hook_problems(settings.webhooks, {s.name for s in settings.sources}))
        problems.extend(export_problems(settings.exports))
    else:
        hooks, names = _valid_parts(data)
        problems.extend(hook_problems(hooks, names))
        problems.extend(export_problems(_valid_exports(data)))
    if problems or settings is None:
        problems = sorted(dict.fromkeys(problems), key=_order)
        raise _config_error(file, problems)

    object.__setattr__(settings, "database", beside(file, settings.database))
    for i, src in enumerate(settings.sources):
        src._options = options[i]
        # The raw keys may hold a literal secret; from here on only the validated options
        # (secrets as SecretStr) remain, so no repr, dump or log line can show it.
        object.__setattr__(src, "__pydantic_extra__", {})
    settings._warnings.extend(_mode_warnings(file, data, settings))
    return settings


def _provider_options(
    data: dict[str, Any], *, named_plugins: bool
) -> tuple[dict[int, ProviderOptions], list[str]]:
    """Each `[[sources]]` table's provider keys, validated from the raw tables.

    Run whether or not the common keys validated, so a typo there does not hide one here.
    """
    from logd.plugin.manager import load_plugins

    tables = data.get("sources")
    if not isinstance(tables, list):
        return {}, []
    providers = [t.get("provider") for t in tables if isinstance(t, dict)]
    wanted = {p for p in providers if isinstance(p, str)} if named_plugins else ()
    registry = load_plugins(providers=wanted)
    common = tuple(SourceConfig.model_fields)
    options: dict[int, ProviderOptions] = {}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            continue  # the Settings stage names it
        name = table.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"sources[{i}].name: {name!r} is already used by sources[{seen[name]}]"
                )
            seen.setdefault(name, i)
        provider_name = table.get("provider")
        if not isinstance(provider_name, str):
            continue  # missing or not a string: the Settings stage names it
        try:
            provider = registry.provider(provider_name)
        except PluginError as exc:
            problems.append(f"sources[{i}].provider: {exc}")
            continue
        keys = {k: v for k, v in table.items() if k not in common}
        try:
            options[i] = provider.Options.model_validate(keys)
        except ValidationError as exc:
            problems.extend(_problems(exc, provider.Options, f"sources[{i}]", common))
    return options, problems


def _valid_parts(data: dict[str, Any]) -> tuple[list[WebhookConfig | None], set[str]]:
    """Each webhook that validates on its own (None where not), and the source names."""
    hooks: list[WebhookConfig | None] = []
    raw = data.get("webhooks")
    for table in raw if isinstance(raw, list) else ():
        try:
            hooks.append(WebhookConfig.model_validate(table))
        except ValidationError:
            hooks.append(None)  # already reported by the Settings stage
    tables = data.get("sources")
    names = {
        t["name"]
        for t in (tables if isinstance(tables, list) else ())
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    }
    return hooks, names


def _valid_exports(data: dict[str, Any]) -> list[OtlpExportConfig | None]:
    """Each `[[exports]]` table that validates on its own (None where not)."""
    exports: list[OtlpExportConfig | None] = []
    raw = data.get("exports")
    for table in raw if isinstance(raw, list) else ():
        try:
            exports.append(OtlpExportConfig.model_validate(table))
        except ValidationError:
            exports.append(None)  # already reported by the Settings stage
    return exports


#: Header names that carry credentials; other header values (a team name) are not secrets.
_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|sig|cookie|pass", re.IGNORECASE)


def literal_secrets(data: dict[str, Any], settings: Settings) -> list[str]:
    """Key paths of secrets written in the file itself (not `{ env }` or `{ file }`)."""
    found = []
    tables = data.get("sources") or []
    for i, src in enumerate(settings.sources):
        for name in type(src.options).model_fields:
            if isinstance(getattr(src.options, name), SecretStr) and isinstance(
                tables[i].get(name), str
            ):
                found.append(f"sources[{i}].{name}")
    for i, table in enumerate(data.get("webhooks") or []):
        if isinstance(table.get("secret"), str):
            found.append(f"webhooks[{i}].secret")
        for header, value in (table.get("headers") or {}).items():
            if isinstance(value, str) and _CREDENTIAL_HEADER.search(header):
                found.append(f"webhooks[{i}].headers.{header}")
    for i, table in enumerate(data.get("exports") or []):
        for header, value in (table.get("headers") or {}).items():
            if isinstance(value, str) and _CREDENTIAL_HEADER.search(header):
                found.append(f"exports[{i}].headers.{header}")
    return found


def _mode_warnings(file: Path, data: dict[str, Any], settings: Settings) -> list[str]:
    """A warning when others may read the file and it holds a literal secret (never shown)."""
    try:
        mode = file.stat().st_mode & 0o777
    except OSError:
        return []
    if not mode & 0o044:
        return []
    keys = literal_secrets(data, settings)
    if not keys:
        return []
    where = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    return [
        f"{file} is readable by other users (mode {mode:04o}) and holds a literal secret "
        f'({where}): run `chmod 600 {file}`, or move the secret to {{ env = "VAR" }} or '
        f'{{ file = "/path" }}'
    ]


def _config_error(file: Path, problems: list[str]) -> ConfigError:
    return ConfigError(f"{file}: " + f"\n{file}: ".join(problems))
