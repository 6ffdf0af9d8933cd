"""The TOML configuration, as pydantic models, and how it is found and loaded.

The file is `-c/--config`, else `$LOGD_CONFIG`, else `/etc/logd/config.toml`. `LOGD_DATABASE`
and `LOGD_LOG_LEVEL` override the file. Each `[[sources]]` table holds the common keys below
plus its provider's own keys, validated by that provider's options model; every error names
the file and the key path (`sources[2].token`).
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError, PluginError

# The path rules live in .paths, which the read commands import without pydantic; the
# names stay importable from here.
from .paths import DEFAULT_CONFIG as DEFAULT_CONFIG
from .paths import beside, default_database, missing_config, read_toml
from .paths import config_path as config_path
from .paths import database_path as database_path
from .provider import ProviderOptions
from .timeparse import parse_duration

LogLevel = Literal["debug", "info", "warning", "error"]


def _resolve_secret(value: Any) -> Any:
    """A literal string, `{ env = "VAR" }` or `{ file = "/path" }` (with `$VARS` expanded)."""
    if isinstance(value, SecretStr | str):
        return value
    if isinstance(value, dict) and len(value) == 1 and "env" in value:
        name = value["env"]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if isinstance(value, dict) and len(value) == 1 and "file" in value:
        raw = str(value["file"])
        for var in re.findall(r"\$\{?(\w+)\}?", raw):
            if var not in os.environ:
                raise ValueError(f"file path {raw!r} uses ${{{var}}}, which is not set")
        path = Path(os.path.expandvars(raw))
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    raise ValueError('expected a string, { env = "VAR" } or { file = "/path" }')


#: A credential: resolved from a literal, an environment variable or a file; never printed.
Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
#: Seconds, from an int or a string such as "30s", "5m", "1h", "1d".
Duration = Annotated[float, BeforeValidator(parse_duration)]


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
    timeout: Duration = Field(30.0, gt=0, description="Per-request HTTP timeout.")
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retry policy.")

    _options: ProviderOptions | None = PrivateAttr(default=None)

    @property
    def options(self) -> ProviderOptions:
        """The provider's own keys, validated by its options model."""
        if self._options is None:
            raise RuntimeError(f"source {self.name}: options not validated")
        return self._options

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
    max_entries: int = Field(100, ge=1, le=10_000, description="Entries per delivery.")
    headers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Extra request headers (values are secrets: they often carry tokens).",
    )
    signature: Literal["fleetit", "standard-webhooks"] = Field(
        "fleetit", description="Signature scheme: FleetIT's X-Signature or Standard Webhooks."
    )
    timeout: Duration = Field(10.0, gt=0, description="Per-request timeout.")
    retry_for: Duration = Field(
        86_400.0, gt=0, description="Keep retrying this long after queueing, then dead."
    )
    allow_insecure: bool = Field(False, description="Allow http:// to a non-loopback host.")

    @property
    def host(self) -> str:
        """Scheme, host and port of `url`: safe to print where the whole URL is not."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


_toml_path: ContextVar[Path] = ContextVar("toml_path")


class _OverrideEnv(EnvSettingsSource):
    """Only `LOGD_DATABASE` and `LOGD_LOG_LEVEL` come from the environment."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        return {k: v for k, v in values.items() if k in ("database", "log_level")}


class Settings(BaseSettings):
    """The whole configuration file."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="LOGD_", frozen=True)

    database: Path = Field(
        default_factory=default_database,
        description="SQLite file; default $STATE_DIRECTORY/logd.db, else /var/lib/logd/logd.db.",
    )
    log_level: LogLevel = Field("info", description="debug, info, warning or error.")
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
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path.get())
        return (init_settings, _OverrideEnv(settings_cls), toml)

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


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{format_loc(tuple(err['loc']), prefix)}: {msg}")
    return lines


def load_settings(path: str | Path | None = None, *, named_plugins: bool = False) -> Settings:
    """Read and validate the config file, provider options included (plugins are loaded).

    `named_plugins`: load only the plugins named after the configured providers when they
    are enough (`load_plugins(providers=…)`); `logd sync` starts faster for it.
    """
    from .plugins import load_plugins

    file = config_path(path)
    if not file.is_file():
        raise missing_config(file)
    read_toml(file)  # for a syntax error that names the line

    token = _toml_path.set(file)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise _config_error(file, _problems(exc)) from None
    finally:
        _toml_path.reset(token)
    object.__setattr__(settings, "database", beside(file, settings.database))

    wanted = {src.provider for src in settings.sources} if named_plugins else ()
    registry = load_plugins(providers=wanted)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, src in enumerate(settings.sources):
        if src.name in seen:
            problems.append(
                f"sources[{i}].name: {src.name!r} is already used by sources[{seen[src.name]}]"
            )
        seen[src.name] = i
        try:
            provider = registry.provider(src.provider)
        except PluginError as exc:
            problems.append(f"sources[{i}].provider: {exc}")
            continue
        try:
            src._options = provider.Options.model_validate(src.provider_keys())
        except ValidationError as exc:
            problems.extend(_problems(exc, f"sources[{i}]"))
        else:
            # The raw keys may hold a literal secret; from here on only the validated options
            # (secrets as SecretStr) remain, so no repr, dump or log line can show it.
            object.__setattr__(src, "__pydantic_extra__", {})
    from .webhook_config import webhook_problems

    problems.extend(webhook_problems(settings))
    if problems:
        raise _config_error(file, problems)
    return settings


def _config_error(file: Path, problems: list[str]) -> ConfigError:
    error = ConfigError(f"{file}: " + f"\n{file}: ".join(problems))
    error.problems = problems  # type: ignore[attr-defined]
    return error
