"""Configuration: finding, validating and every error naming its file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from logd.cli.main import cli
from logd.config.settings import config_path, database_path, load_settings
from logd.errors import ConfigError

FLEET = 'name = "fleet"\nprovider = "fleetit"\ntoken = "tok-123456"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_a_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, f'database = "store/logd.db"\n[[sources]]\n{FLEET}interval = "5m"\n')
    settings = load_settings(path)
    src = settings.source("fleet")
    assert src.interval == 300 and src.timeout == 30 and src.retry.attempts == 5
    assert src.options.base_url == "https://api.app.fleetit.com"
    # A relative database is relative to the config file, not the working directory.
    assert settings.database == (tmp_path / "store" / "logd.db").resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"[[sources]]\n{FLEET}tokne = 'x'\n", "sources[0].tokne: unknown key"),
        (
            '[[sources]]\nname = "fleet"\nprovider = "fleetit"\n',
            "sources[0].token: required key is missing",
        ),
        (f"[[sources]]\n{FLEET}interval = 'soon'\n", "sources[0].interval: expected a duration"),
        (f"[[sources]]\n{FLEET}retry = {{ attempts = 0 }}\n", "sources[0].retry.attempts"),
        (
            f"[[sources]]\n{FLEET}[[sources]]\n{FLEET}",
            "sources[1].name: 'fleet' is already used by sources[0]",
        ),
        (
            '[[sources]]\nname = "x"\nprovider = "nope"\n',
            "sources[0].provider: unknown provider 'nope'; installed: ",
        ),
        ("colour = 'blue'\n", "colour: unknown key"),
        ("log_level = 'loud'\n", "log_level:"),
        ('[[sources]]\nname = "a:b"\nprovider = "fleetit"\ntoken = "t"\n', "sources[0].name"),
        (
            f"[[sources]]\n{FLEET}".replace('"tok-123456"', '{ env = "NO_SUCH_VAR_X" }'),
            "sources[0].token: environment variable NO_SUCH_VAR_X is not set",
        ),
        (
            f"[[sources]]\n{FLEET}".replace('"tok-123456"', '{ file = "/nonexistent/secret" }'),
            "sources[0].token: cannot read secret file /nonexistent/secret",
        ),
        (
            f"[[sources]]\n{FLEET}".replace(
                '"tok-123456"', '{ file = "${CREDENTIALS_DIRECTORY}/t" }'
            ),
            "uses ${CREDENTIALS_DIRECTORY}, which is not set",
        ),
        ("[[sources]\n", "invalid TOML"),
    ],
)
def test_each_error_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = problem(path)
    assert expected in message
    assert str(path) in message


def test_unknown_provider_lists_the_installed_ones(tmp_path: Path) -> None:
    message = problem(write(tmp_path, '[[sources]]\nname = "x"\nprovider = "nope"\n'))
    assert "fleetit" in message


def test_secrets_from_env_and_credential_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "fleet-token").write_text("from-file-token\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FLEET_TOKEN", "from-env-token")
    text = f"[[sources]]\n{FLEET}".replace(
        '"tok-123456"', '{ file = "${CREDENTIALS_DIRECTORY}/fleet-token" }'
    ) + f"[[sources]]\n{FLEET}".replace('"fleet"', '"fleet2"').replace(
        '"tok-123456"', '{ env = "FLEET_TOKEN" }'
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.source("fleet").options.token.get_secret_value() == "from-file-token"
    assert settings.source("fleet2").options.token.get_secret_value() == "from-env-token"
    assert "from-env-token" not in repr(settings) and "from-file-token" not in str(settings)


def test_environment_overrides_database_and_log_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'database = "/tmp/from-file.db"\nlog_level = "info"\n')
    monkeypatch.setenv("LOGD_DATABASE", str(tmp_path / "env.db"))
    monkeypatch.setenv("LOGD_LOG_LEVEL", "debug")
    settings = load_settings(path)
    assert settings.database == tmp_path / "env.db" and settings.log_level == "debug"
    assert database_path(path) == tmp_path / "env.db"


def test_default_database_follows_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "# every key at its default\n")
    assert load_settings(path).database == Path("/var/lib/logd/logd.db")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/private/logd")
    assert load_settings(path).database == Path("/var/lib/private/logd/logd.db")


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path(None) == Path("/etc/logd/config.toml")
    monkeypatch.setenv("LOGD_CONFIG", "/srv/logd.toml")
    assert config_path(None) == Path("/srv/logd.toml")
    assert config_path("/x.toml") == Path("/x.toml")


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, f"[[sources]]\n{FLEET}")
    result = CliRunner().invoke(cli, ["check-config", "-c", str(good)])
    assert result.exit_code == 0, result.output
    assert "source fleet: fleetit" in result.output and "tok-123456" not in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text(f"[[sources]]\n{FLEET}tokne = 1\n")
    result = CliRunner().invoke(cli, ["check-config", "-c", str(bad)])
    assert result.exit_code == 2
    assert "sources[0].tokne: unknown key" in result.output
    assert "Traceback" not in result.output

    missing = CliRunner().invoke(cli, ["check-config", "-c", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_literal_secrets_never_show_in_repr_str_or_dump(tmp_path: Path) -> None:
    path = write(tmp_path, f"[[sources]]\n{FLEET}".replace("tok-123456", "literal-secret-123"))
    settings = load_settings(path)
    assert settings.source("fleet").options.token.get_secret_value() == "literal-secret-123"
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "literal-secret-123" not in text


def test_read_commands_and_sync_find_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'database = "data/logd.db"\n')
    assert database_path(path) == load_settings(path).database == (tmp_path / "data/logd.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOGD_DATABASE", "elsewhere.db")
    assert database_path(path) == load_settings(path).database == Path("elsewhere.db")


@pytest.mark.parametrize("value", ["5", '""', "[1, 2]"])
def test_read_commands_reject_a_database_that_is_not_a_path(tmp_path: Path, value: str) -> None:
    # Read commands find the store without loading pydantic; a bad value is still one line.
    path = write(tmp_path, f"database = {value}\n")
    with pytest.raises(ConfigError, match=r"database: must be a file path or a postgresql:// URL"):
        database_path(path)
    with pytest.raises(ConfigError, match=r"database"):
        load_settings(path)
