"""Shared pytest set-up for the core tests and every plugin's tests."""

from __future__ import annotations

import pytest

from logd.plugin import manager as plugins


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test loads plugins itself, so env filters set by one test never leak into another.
    plugins.reset()
    for var in ("LOGD_CONFIG", "LOGD_DATABASE", "LOGD_LOG_LEVEL", "LOGD_PLUGINS",
                "LOGD_DISABLE_PLUGINS", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY",
                "JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    # Tables fit the terminal they print to. A test worker's stdout may be whatever terminal
    # started the run (pytest-xdist keeps it), so every test starts at the width a pipe gets;
    # tests about narrow terminals set COLUMNS themselves.
    monkeypatch.setenv("COLUMNS", "120")
