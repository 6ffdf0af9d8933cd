"""Every installed provider that registers a simulator passes the provider contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from logd.plugin.contract import NotApplicable, contract_cases, run_check


@pytest.mark.parametrize(("provider", "check"), contract_cases())
def test_provider_contract(provider: str, check: str, tmp_path: Path) -> None:
    try:
        run_check(check, provider, tmp_path)
    except NotApplicable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(("provider", "check"), contract_cases())
def test_provider_contract_on_postgresql(provider: str, check: str, tmp_path: Path) -> None:
    from logd.store.postgres.cluster import cluster_for_tests, new_database

    cluster = cluster_for_tests()
    try:
        run_check(check, provider, tmp_path, database=lambda _where: new_database(cluster))
    except NotApplicable as exc:
        pytest.skip(str(exc))


def test_every_bundled_provider_is_covered() -> None:
    providers = {provider for provider, _check in contract_cases()}
    assert {"akinon", "elasticpath", "fleetit", "http", "maestra", "pegasus"} <= providers
