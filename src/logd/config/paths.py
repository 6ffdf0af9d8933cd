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

from logd.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/logd/config.toml")


def config_path(option: str | Path | None) -> Path:
    """The config file to use: the option, else `$LOGD_CONFIG`, else /etc/logd/config.toml."""
    if option:
        return Path(option)
    env = os.environ.get("LOGD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def config_named(option: str | Path | None) -> bool:
    """Whether the operator named the config (`-c` or `$LOGD_CONFIG`): then it must exist."""
    return bool(option) or bool(os.environ.get("LOGD_CONFIG"))


LOG_LEVELS = ("debug", "info", "warning", "error")


def env_log_level() -> str | None:
    """`$LOGD_LOG_LEVEL`, lower-cased, or None; a `ConfigError` when it is not a level."""
    value = os.environ.get("LOGD_LOG_LEVEL")
    if not value:
        return None
    if value.strip().lower() not in LOG_LEVELS:
        raise ConfigError(
            f"LOGD_LOG_LEVEL={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}",
            hint="fix or unset LOGD_LOG_LEVEL in the environment",
        )
    return value.strip().lower()


def default_database() -> Path:
    """The store when the config names none: $STATE_DIRECTORY/logd.db, else /var/lib/logd."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "logd.db"
    return Path("/var/lib/logd/logd.db")


def missing_config(file: Path) -> ConfigError:
    """The error for a config file that does not exist (naming how it was chosen)."""
    how = " (from $LOGD_CONFIG)" if os.environ.get("LOGD_CONFIG") == str(file) else ""
    return ConfigError(
        f"config file {file}{how} not found",
        hint="pass -c PATH, set LOGD_CONFIG, or copy config.example.toml there",
    )


#: A config is a page of TOML; anything larger is not one (and is never read whole).
MAX_CONFIG_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_toml(file: Path) -> dict[str, Any]:
    """The parsed file, or a `ConfigError` of one line naming it and the line or byte.

    Whatever the path holds (a directory, a file logd may not read, another encoding, an
    empty file) is one error, never a traceback: the daemon's reload depends on it. A UTF-8
    byte-order mark (Windows editors write one) is accepted; UTF-16 and any byte that is not
    UTF-8 are rejected with the line, column and byte offset of the first bad byte.
    """
    if config_exists(file) and file.is_dir():
        raise ConfigError(f"config file {file} is a directory, not a file")
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {file} is larger than {MAX_CONFIG_BYTES} bytes")
    if data.startswith(_UTF16_BOMS) or (len(data) > 1 and b"\x00" in data[:2]):
        raise ConfigError(f"config file {file} is UTF-16 encoded; save it as UTF-8")
    data = data.removeprefix(_UTF8_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{file}: line {line}, column {column} (byte {exc.start}): byte "
            f"0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(
            f"config file {file} is empty",
            hint="copy config.example.toml there and edit it",
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None


def config_exists(file: Path) -> bool:
    """Whether something is at `file`; a `ConfigError` when logd may not even look.

    `Path.exists()` raises on a directory logd may not enter (EACCES): one line, not that.
    """
    try:
        file.stat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    return True


def check_config_file(file: Path, option: str | Path | None) -> bool:
    """Whether `file` is there to read; a `ConfigError` when it was named and is missing.

    A path that exists but is not a regular file (a directory) is left to `read_toml`,
    which names it: only a config that is absent falls back to the defaults, and only when
    the operator did not name it.
    """
    if config_exists(file):
        return True
    if config_named(option):
        raise missing_config(file)
    return False


def configured_names(option: str | Path | None) -> dict[str, set[str]]:
    """`{"source": names, "provider": names}` of the config's `[[sources]]`, read as TOML only.

    Empty when there is no readable config: a read command given `--db` works without one.
    """
    found: dict[str, set[str]] = {"source": set(), "provider": set()}
    file = config_path(option)
    try:
        tables = read_toml(file).get("sources") if config_exists(file) else None
    except ConfigError:
        tables = None
    for table in tables if isinstance(tables, list) else ():
        if isinstance(table, dict):
            for key, names in (("name", found["source"]), ("provider", found["provider"])):
                if isinstance(table.get(key), str):
                    names.add(table[key])
    return found


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
    rule `load_settings` applies. Raises ConfigError, one line, when `database` is not a
    non-empty string.
    """
    if os.environ.get("LOGD_DATABASE"):
        return Path(os.environ["LOGD_DATABASE"])
    file = config_path(path)
    if not check_config_file(file, path):
        return default_database()
    data = read_toml(file)
    if "database" not in data:
        return default_database()
    value = data["database"]
    if isinstance(value, str) and value:
        return beside(file, Path(value))
    # The same words as the full validation's, without loading pydantic for them.
    raise ConfigError(f"{file}: database: must be a file path (a non-empty string), not {value!r}")
