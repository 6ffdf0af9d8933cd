"""Where the config file and the store are: the rules, without the config models.

`logd.config` validates the whole file with pydantic; the read commands (`query`, `show`,
`status`, `stats`) only need the store's path, so they read it here, through the same rules,
without importing pydantic or loading plugins.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_CONFIG = Path("/etc/logd/config.toml")


def config_path(option: str | Path | None) -> Path:
    """The config file to use: the option, else `$LOGD_CONFIG`, else /etc/logd/config.toml."""
    if option:
        return Path(option)
    env = os.environ.get("LOGD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def default_database() -> Path:
    """The store when the config names none: $STATE_DIRECTORY/logd.db, else /var/lib/logd."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "logd.db"
    return Path("/var/lib/logd/logd.db")


def missing_config(file: Path) -> ConfigError:
    """The error for a config file that does not exist."""
    return ConfigError(
        f"config file {file} not found",
        hint="pass -c PATH, set LOGD_CONFIG, or copy config.example.toml there",
    )


def read_toml(file: Path) -> dict[str, Any]:
    """The parsed file, or a `ConfigError` naming it (and the line, for a syntax error)."""
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None


def beside(file: Path, database: Path) -> Path:
    """A relative `database` in the file is relative to the file, not to wherever logd starts.

    `LOGD_DATABASE` is taken as given (relative to the working directory), like any path a
    user types; read commands and the daemon resolve it the same way.
    """
    if database.is_absolute() or os.environ.get("LOGD_DATABASE"):
        return database
    return (file.parent / database).resolve()


def database_path(path: str | Path | None = None) -> Path:
    """The store's path without validating sources or loading plugins (for read commands).

    `LOGD_DATABASE`, else the file's `database` (beside the file), else the default: the
    rule `load_settings` applies. A `database` value only the full validation can judge (not
    a non-empty string) goes through `load_settings`, for its error or its answer.
    """
    if os.environ.get("LOGD_DATABASE"):
        return Path(os.environ["LOGD_DATABASE"])
    file = config_path(path)
    if not file.is_file():
        if path is not None:
            raise missing_config(file)
        return default_database()
    data = read_toml(file)
    if "database" not in data:
        return default_database()
    value = data["database"]
    if isinstance(value, str) and value:
        return beside(file, Path(value))
    from .config import load_settings  # pydantic: only for a value it must judge

    return load_settings(file).database
