"""Where the config file and the store are: the rules, without the config models.

`logd.config` validates the whole file with pydantic; the read commands (`query`, `show`,
`status`, `stats`) only need the store's path, so they read it here, through the same rules,
without importing pydantic or loading plugins.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from logd.errors import ConfigError
from logd.store import POSTGRES_SCHEMES

DEFAULT_CONFIG = Path("/etc/logd/config.toml")


#: Where `${CREDENTIALS_DIRECTORY}` points when systemd did not set it (`check-config
#: --credentials-dir`): the unit's credentials are copies of the files in that directory.
_credentials_dir: ContextVar[Path | None] = ContextVar("credentials_dir", default=None)
#: Where install-service puts the credential files (`make install-service`, docs/deploy.md).
DEFAULT_CREDENTIALS_DIR = Path("/etc/logd/credentials")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_file_path(raw: str) -> tuple[Path, str]:
    """`raw` with `$VARS` expanded, and a note saying where a stand-in value came from."""
    env = dict(os.environ)
    note = ""
    fallback = _credentials_dir.get()
    if "CREDENTIALS_DIRECTORY" not in env and fallback is not None:
        env["CREDENTIALS_DIRECTORY"] = str(fallback)
        if "CREDENTIALS_DIRECTORY" in raw:
            note = f" (${{CREDENTIALS_DIRECTORY}} taken as {fallback}; --credentials-dir DIR)"
    for match in _VAR.finditer(raw):
        var = match.group(1) or match.group(2)
        if var not in env:
            hint = (
                " (systemd sets it for the unit; `logd check-config --credentials-dir DIR` "
                "reads the credential files from DIR)"
                if var == "CREDENTIALS_DIRECTORY"
                else ""
            )
            raise ValueError(f"file path {raw!r} uses ${{{var}}}, which is not set{hint}")
    return Path(_VAR.sub(lambda m: env[m.group(1) or m.group(2)], raw)), note


def resolve_secret(value: Any) -> Any:
    """A literal string, `{ env = "VAR" }` or `{ file = "/path" }` (with `$VARS` expanded)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1 and "env" in value:
        name = value["env"]
        if not isinstance(name, str) or not name:
            raise ValueError('{ env = "VAR" } takes the name of a variable, as a string')
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if isinstance(value, dict) and len(value) == 1 and "file" in value:
        if not isinstance(value["file"], str) or not value["file"]:
            raise ValueError('{ file = "/path" } takes a path, as a string')
        path, note = _expand_file_path(value["file"])
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}{note}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"secret file {path} is not UTF-8 (byte {exc.start})") from None
    raise ValueError('expected a string, { env = "VAR" } or { file = "/path" }')


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


def beside(file: Path, database: Database) -> Database:
    """A relative `database` in the file is relative to the file, not to wherever logd starts.

    `LOGD_DATABASE` is taken as given (relative to the working directory), like any path a
    user types; read commands and the daemon resolve it the same way.
    """
    if isinstance(database, DatabaseURL):
        return database
    if database.is_absolute() or os.environ.get("LOGD_DATABASE"):
        return database
    return (file.parent / database).resolve()


def database_path(path: str | Path | None = None) -> Database:
    """The store's path without validating sources or loading plugins (for read commands).

    `LOGD_DATABASE`, else the file's `database` (beside the file), else the default: the
    rule `load_settings` applies. Raises ConfigError, one line, when `database` is not a
    non-empty string.
    """
    if os.environ.get("LOGD_DATABASE"):
        return database_value(os.environ["LOGD_DATABASE"])
    file = config_path(path)
    if not check_config_file(file, path):
        return default_database()
    data = read_toml(file)
    if "database" not in data:
        return default_database()
    value = data["database"]
    if isinstance(value, str) and value:
        return beside(file, database_value(value))
    if isinstance(value, dict):  # { env = "VAR" } or { file = "/path" }: a secret URL
        try:
            resolved = resolve_secret(value)
        except ValueError as exc:
            raise ConfigError(f"{file}: database: {exc}") from None
        return beside(file, database_value(resolved))
    # The same words as the full validation's, without loading pydantic for them.
    raise ConfigError(
        f"{file}: database: must be a file path or a postgresql:// URL, not {value!r}"
    )


#: URL schemes of a PostgreSQL store (libpq's); anything else is a SQLite file path.
DATABASE_URL_SCHEMES = POSTGRES_SCHEMES


class DatabaseURL:
    """A PostgreSQL store's URL: `postgresql://user:password@host:port/dbname?…`.

    The URL may carry a password, so it is a credential: `str()` and `repr()` show it with the
    password masked, `secret()` gives the whole URL (only to the driver), and the password is
    registered with `logd.redact` so no log line or error shows it either.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        from logd import redact

        parts = urlsplit(url)
        if not url.startswith(DATABASE_URL_SCHEMES):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        if parts.password:
            redact.register(parts.password)
        self._url = url

    def secret(self) -> str:
        """The URL as configured, password included: for the database driver only."""
        return self._url

    def __str__(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self._url)
        if not parts.password:
            return self._url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()

    def __repr__(self) -> str:
        return f"DatabaseURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


#: Where a store is: a SQLite file, or a PostgreSQL server.
Database = Path | DatabaseURL


def database_value(value: str) -> Database:
    """A configured `database` string as a SQLite path or a PostgreSQL URL."""
    return DatabaseURL(value) if value.startswith(DATABASE_URL_SCHEMES) else Path(value)
