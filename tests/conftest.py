"""Fixtures shared by the test suite: a real PostgreSQL server started by the tests themselves.

`pg_cluster` is one throwaway cluster per test process (each pytest-xdist worker has its own,
on a Unix socket in its own temporary directory); `pg_url` is a fresh database in it for one
test. Where no PostgreSQL binaries can bring a cluster up the tests that need one are skipped
with the reason, unless LOGD_REQUIRE_POSTGRES=1 (set by CI) makes that a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from logd.pgstore.cluster import Cluster, ClusterUnavailable, temporary_cluster

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        with temporary_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as exc:
        if os.environ.get("LOGD_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"LOGD_REQUIRE_POSTGRES=1 but no PostgreSQL server: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    import psycopg

    name = f"logd_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_cluster.url(name)
