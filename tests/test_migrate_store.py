"""`logd migrate-store`: a SQLite store copied into PostgreSQL, verified, resumable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.errors import StoreError
from logd.store.interface import BatchResult, BatchTransaction, Filters, NewDelivery
from logd.store.postgres.cluster import PASSWORD, PASSWORD_ROLE, Cluster
from logd.store.postgres.copy import copy_sqlite
from logd.store.postgres.store import PostgresStore
from logd.store.sqlite.export import SqliteExport
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)


def seed(path: Path, n: int = 230) -> None:
    with Store(path) as store:
        run = store.start_run("fleet")
        batch = []
        for i in range(n):
            e = Entry(
                native_id=f"id\x00{i}" if i == 7 else str(i),
                timestamp=NOW - timedelta(minutes=i),
                status=Status.FAILURE if i % 3 == 0 else Status.SUCCESS,
                message=f"sync order ORD-{i} İstanbul" if i % 2 else f"invoice {i}",
                error="Timeout" if i % 3 == 0 else None,
                raw={"sku": f"SKU-{i}"},
            )
            batch.append(e)

        def queue(tx: BatchTransaction, result: BatchResult) -> None:
            body = b'{"delivery_id":"dlv_1","entries":[{"id":"fleet:0"}]}'
            tx.enqueue(NewDelivery("dlv_1", "ops", "fleet", "fleetit", 1, body), NOW)

        store.commit_batch(
            "fleet", batch, {"since": "2026-11-01"}, hooks=[queue], provider="fleetit"
        )
        store.finish_run(run, requests=3)


def test_a_store_is_copied_and_verified(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "logd.db"
    seed(path)
    result = CliRunner().invoke(
        cli, ["migrate-store", "--from", f"sqlite:{path}", "--to", pg_url, "--chunk", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "copied and verified" in result.stdout and "entries 230" in result.stdout
    with Store(path) as lite, PostgresStore(pg_url) as pg:
        for f in (Filters(), Filters(text="istanbul"), Filters(text="ORD-17"), Filters(text="sku")):
            assert [r.as_dict() for r in pg.search(f, limit=None)] == [
                r.as_dict() for r in lite.search(f, limit=None)
            ]
        assert pg.get("fleet:id\x007") == lite.get("fleet:id\x007")
        assert pg.cursor("fleet") == {"since": "2026-11-01"}
        (pending,) = pg.claim_due("ops", "host-a:1", 60, NOW + timedelta(seconds=1))
        assert pending.body.startswith(b'{"delivery_id":') and pending.count == 1
        assert pg.source_stats()[0]["last_success"] is not None
        # The copy is a store like any other: new batches get keys and change numbers after.
        e = Entry(native_id="new", timestamp=NOW, status=Status.FAILURE, message="after")
        assert pg.commit_batch("fleet", [e], None, provider="fleetit").new == 1
        assert [r.native_id for _, r in pg.changes_after(0)][-1] == "new"
        assert pg.start_run("fleet") > 1


def test_a_copy_that_was_killed_resumes_where_it_stopped(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "logd.db"
    seed(path)

    class Killed(Exception):
        pass

    def kill_after_two(what: str, n: int) -> None:
        if n >= 100:
            raise Killed

    source = SqliteExport(path)
    with PostgresStore(pg_url) as pg:
        with pytest.raises(Killed):
            copy_sqlite(source, pg, chunk=50, progress=kill_after_two)
        assert pg.count() == 100  # two chunks committed, nothing else
        seen: list[int] = []
        result = copy_sqlite(source, pg, chunk=50, progress=lambda w, n: seen.append(n))
        assert result.resumed and result.entries == 130 and result.totals["entries"] == 230
        assert pg.count() == 230
    source.close()


def test_a_database_holding_other_entries_is_refused(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "logd.db"
    seed(path, n=3)
    with PostgresStore(pg_url) as pg:
        e = Entry(native_id="x", timestamp=NOW, status=Status.SUCCESS, message="other")
        pg.commit_batch("shop", [e], None, provider="shopify")
        with pytest.raises(StoreError, match="not a copy of"):
            copy_sqlite(SqliteExport(path), pg)


def test_the_password_never_shows(tmp_path: Path, pg_cluster: Cluster) -> None:
    path = tmp_path / "logd.db"
    seed(path, n=3)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE copied OWNER {PASSWORD_ROLE}")
    url = pg_cluster.url("copied", user=PASSWORD_ROLE).replace("@", f":{PASSWORD}@", 1)
    ok = CliRunner().invoke(cli, ["migrate-store", "--from", f"sqlite:{path}", "--to", url])
    assert ok.exit_code == 0, ok.output
    assert PASSWORD not in ok.output and f"{PASSWORD_ROLE}:***@" in ok.output
    wrong = url.replace(PASSWORD, "not-the-pw-81")
    bad = CliRunner().invoke(cli, ["migrate-store", "--from", f"sqlite:{path}", "--to", wrong])
    assert bad.exit_code == 1 and "refused the login" in bad.output
    assert "not-the-pw-81" not in bad.output


def test_from_must_name_a_sqlite_store(pg_url: str) -> None:
    result = CliRunner().invoke(cli, ["migrate-store", "--from", "/x.db", "--to", pg_url])
    assert result.exit_code == 2 and "expected sqlite:PATH" in result.output
