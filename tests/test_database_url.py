"""`database` as a PostgreSQL URL: a credential like any other, read the same by every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from logd.cli.main import cli
from logd.config.paths import DatabaseURL, database_path
from logd.config.settings import load_settings

URL = "postgresql://logd:pg-pass-5150@db.example:5432/logd"
MASKED = "postgresql://logd:***@db.example:5432/logd"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_url_is_a_database_url_and_never_shows_its_password(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f'database = "{URL}"\n'))
    assert isinstance(settings.database, DatabaseURL)
    assert settings.database.secret() == URL
    for text in (str(settings.database), repr(settings.database), repr(settings)):
        assert "pg-pass-5150" not in text
    assert str(settings.database) == MASKED


@pytest.mark.parametrize("form", ["literal", "env", "file"])
def test_read_commands_and_the_daemon_read_the_same_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    secret = tmp_path / "pg-url"
    secret.write_text(URL + "\n")
    monkeypatch.setenv("PG_URL", URL)
    value = {
        "literal": f'"{URL}"',
        "env": '{ env = "PG_URL" }',
        "file": f'{{ file = "{secret}" }}',
    }[form]
    config = write(tmp_path, f"database = {value}\n")
    assert database_path(config) == load_settings(config).database == DatabaseURL(URL)


def test_check_config_shows_the_url_masked(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f'database = "{URL}"\n[[sources]]\nname = "a"\nprovider = "fleetit"\n'
        'base_url = "http://127.0.0.1:9"\ntoken = "t-123456"\n',
    )
    result = CliRunner().invoke(cli, ["check-config", "-c", str(config)])
    assert "pg-pass-5150" not in result.output
    assert MASKED in result.output, result.output


def test_an_unknown_env_var_for_the_url_is_one_line(tmp_path: Path) -> None:
    config = write(tmp_path, 'database = { env = "NOT_SET_ANYWHERE" }\n')
    result = CliRunner().invoke(cli, ["query", "-c", str(config)])
    assert result.exit_code == 2
    assert "database: environment variable NOT_SET_ANYWHERE is not set" in result.output
