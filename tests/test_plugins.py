"""Plugin loading: entry points once, broken plugins isolated, clashes named, env filters."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from logd.cli.main import cli
from logd.errors import PluginError
from logd.plugin import manager as plugins


def fake_distribution(root: Path, name: str, module_source: str) -> None:
    """An installed distribution (dist-info + module) that registers entry point `name`."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[logd]\n{name} = {name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("zz_")]:
        del sys.modules[mod]


def test_installed_plugins_are_found() -> None:
    registry = plugins.load_plugins()
    assert "fleetit" in registry.providers and "fleetit" in registry.simulators
    assert plugins.load_plugins() is registry  # loaded once


def test_a_broken_plugin_is_a_warning_and_the_rest_load(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_distribution(site, "zz_broken", "raise ImportError('missing dependency frobnicate')\n")
    registry = plugins.load_plugins()
    assert "fleetit" in registry.providers
    assert "zz_broken" in caplog.text and "frobnicate" in caplog.text
    result = CliRunner().invoke(cli, ["plugins"])
    assert "zz_broken" in result.output and "failed to load" in result.output


def test_two_providers_with_one_name_name_both_plugins(site: Path) -> None:
    fake_distribution(
        site,
        "zz_clash",
        """
        from logd import hookimpl
        from logd_fleetit import FleetIT

        class Copy(FleetIT):
            pass

        @hookimpl
        def register_providers(register):
            register(Copy)
        """,
    )
    with pytest.raises(PluginError) as info:
        plugins.load_plugins()
    assert "'fleetit'" in str(info.value) and "'zz_clash'" in str(info.value)


def test_disable_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGD_DISABLE_PLUGINS", "fleetit")
    assert "fleetit" not in plugins.load_plugins().providers
    plugins.reset()
    monkeypatch.setenv("LOGD_DISABLE_PLUGINS", "")
    monkeypatch.setenv("LOGD_PLUGINS", "fleetit")
    assert list(plugins.load_plugins().providers) == ["fleetit"]


def test_plugins_command_lists_providers() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "fleetit (logd-fleetit" in result.output
    assert "provider fleetit:" in result.output


def test_loading_for_named_providers_falls_back_to_every_plugin() -> None:
    plugins.reset()
    try:
        narrow = plugins.load_plugins(providers={"fleetit"})
        assert set(narrow.providers) == {"fleetit"}
        assert plugins.load_plugins(providers={"fleetit"}) is narrow  # kept for `sync`
        # A provider no entry point is named after: everything loads, as without the hint,
        # and that full registry is the one every later call gets.
        full = plugins.load_plugins(providers={"fleetit", "no-such-entry-point"})
        assert full is not narrow
        assert {"fleetit", "pegasus", "akinon"} <= set(full.providers)
        assert plugins.load_plugins() is full
    finally:
        plugins.reset()
