"""The PostgreSQL store against a real server that the tests start (tests/conftest.py)."""

from __future__ import annotations

import psycopg
import pytest

from logd.store.postgres.cluster import PASSWORD, PASSWORD_ROLE, Cluster


def test_the_cluster_is_real_and_on_its_own_socket(pg_url: str, pg_cluster: Cluster) -> None:
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert version is not None and int(version[0]) >= 150000
    assert listen == ("",)  # no TCP port: parallel workers never clash
    assert (pg_cluster.socket_dir / ".s.PGSQL.5432").exists()


def test_a_role_with_a_password_must_give_it(pg_cluster: Cluster) -> None:
    url = pg_cluster.url(user=PASSWORD_ROLE)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url.replace("@", ":wrong@", 1)).close()
    good = url.replace("@", f":{PASSWORD}@", 1)
    with psycopg.connect(good) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (PASSWORD_ROLE,)
