"""Shared pytest set-up for the core tests and every plugin's tests."""

from __future__ import annotations

import itertools
import os

import pytest

from logd.plugin import manager as plugins
from logd.store.postgres.cluster import Cluster, cluster_for_tests


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


# -- a real PostgreSQL server ---------------------------------------------------------------
# `pg_cluster` is one throwaway cluster per test process (each pytest-xdist worker has its own,
# on a Unix socket in its own temporary directory), started only when a test asks for it;
# `pg_url` is a fresh database in it for one test. Where no PostgreSQL binaries can bring a
# cluster up, those tests are skipped with the reason, unless LOGD_REQUIRE_POSTGRES=1 (set by
# CI) makes that a failure.

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Cluster:
    return cluster_for_tests()


@pytest.fixture(scope="session")
def _pg_template(pg_cluster: Cluster) -> str:
    """A database with logd's schema, that each test's database is copied from (a copy takes
    a quarter of the time of a new database and its migrations)."""
    import psycopg

    from logd.store.postgres.store import PostgresStore

    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE logd_template")
        PostgresStore(pg_cluster.url("logd_template")).close()
        conn.execute("ALTER DATABASE logd_template IS_TEMPLATE true")
        version = conn.execute("SHOW server_version_num").fetchone()
    # FILE_COPY (PostgreSQL 15+) copies the files; the default writes every page to the WAL.
    strategy = " STRATEGY FILE_COPY" if version and int(version[0]) >= 150000 else ""
    return f"TEMPLATE logd_template{strategy}"


@pytest.fixture
def pg_url(pg_cluster: Cluster, _pg_template: str) -> str:
    """A fresh database with logd's schema, for one test."""
    import psycopg

    name = f"logd_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {_pg_template}')
    return pg_cluster.url(name)
