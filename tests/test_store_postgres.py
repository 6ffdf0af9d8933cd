# ruff: noqa: RUF001 - Turkish, Greek and full-width words are part of the corpus
"""The PostgreSQL store against a real server that the tests start (the root conftest).

What it must share with the SQLite store: the rows it keeps and the search results users get
(a grid of the queries they type, both stores seeded alike). What only a shared database
needs: leases with fencing, deliveries claimed by one instance each, `--follow` that never
passes over a batch still committing, and errors that say what to do without the password.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from logd import Entry, Status
from logd.errors import StoreError
from logd.store import open_reader
from logd.store.interface import Attempt, Filters, LeaseLost, NewDelivery, RunProgress
from logd.store.postgres import cluster, search
from logd.store.postgres.cluster import PASSWORD, PASSWORD_ROLE, Cluster, ClusterUnavailable
from logd.store.postgres.store import BatchTransaction, PostgresStore, redacted_url
from logd.store.query_language import parse
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)


def entry(native_id: str, message: str, **kw: Any) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=kw.pop("timestamp", NOW - timedelta(hours=1)),
        status=kw.pop("status", Status.FAILURE),
        message=message,
        **kw,
    )
    return e


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_url) as store:
        yield store


# -- the server the tests start ----------------------------------------------------------------


def test_the_cluster_is_real_and_on_its_own_socket(pg_url: str, pg_cluster: Cluster) -> None:
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert version is not None and int(version[0]) >= 150000
    assert listen == ("",)  # no TCP port: parallel workers never clash
    assert (pg_cluster.socket_dir / ".s.PGSQL.5432").exists()


def test_without_server_binaries_the_reason_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cluster, "candidate_bindirs", list)
    with pytest.raises(ClusterUnavailable, match="install the `pgserver` wheel"):
        cluster.temporary_cluster().__enter__()
    broken = tmp_path / "bin"
    broken.mkdir()
    for name in ("initdb", "postgres"):
        (broken / name).write_text("#!/bin/sh\necho 'initdb: cannot run here' >&2\nexit 1\n")
        (broken / name).chmod(0o755)
    monkeypatch.setattr(cluster, "candidate_bindirs", lambda: [broken])
    # Run by root, the server's user cannot even enter pytest's temporary directory: then
    # that is the reason given ("Permission denied"), else the script's own words.
    with pytest.raises(ClusterUnavailable, match=re.escape(f"{broken}: initdb ")):
        cluster.temporary_cluster().__enter__()


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's user differs from ours only as root")
def test_binaries_the_server_user_cannot_reach_are_copied_where_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout under /root, or pytest's own 0700 temporary directory, as here.
    wheel = next((b for b in cluster.candidate_bindirs() if "pgserver" in str(b)), None)
    if wheel is None:
        pytest.skip("the pgserver wheel is not installed")
    hidden = tmp_path / "site-packages" / "pgserver" / "pginstall"
    for part in ("bin", "lib", "share"):
        shutil.copytree(wheel.parent / part, hidden / part, symlinks=True)
    libs = wheel.parent.parent.parent / "pgserver.libs"
    shutil.copytree(libs, tmp_path / "site-packages" / libs.name)
    monkeypatch.setattr(cluster, "candidate_bindirs", lambda: [hidden / "bin"])
    with cluster.temporary_cluster() as started, psycopg.connect(started.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not started.bindir.is_relative_to(tmp_path)  # ran from the copy


# -- rows kept as the SQLite store keeps them ---------------------------------------------------


def test_a_batch_round_trips_and_a_resync_writes_nothing(pg: PostgresStore) -> None:
    batch = [
        entry("1", "Sync failed", error="Timeout", raw={"order": "ORD-1"}),
        entry("2", "ok", status=Status.SUCCESS, entity_type="order", entity_id="ORD-2"),
        entry("nul\x00id", "text with \x00 NUL and \U0010ffff", error="e\x00"),
    ]
    first = pg.commit_batch("fleet", batch, {"page": 2}, provider="fleetit")
    assert (first.new, first.updated, len(first.new_failures)) == (3, 0, 2)
    assert pg.cursor("fleet") == {"page": 2}
    row = pg.get("fleet:nul\x00id")
    assert row is not None and row.message == "text with \x00 NUL and \U0010ffff"
    assert row.error == "e\x00"
    assert pg.known_ids("fleet", ["1", "nul\x00id", "3"]) == {"1", "nul\x00id"}
    again = pg.commit_batch("fleet", batch, {"page": 3}, provider="fleetit")
    assert (again.new, again.updated, again.unchanged) == (0, 0, 3)
    # A pending call that now succeeds is rewritten; a success turning into a failure is news.
    changed = pg.commit_batch(
        "fleet", [entry("2", "ok now", status=Status.FAILURE)], None, provider="fleetit"
    )
    assert changed.updated == 1 and [e.native_id for e in changed.new_failures] == ["2"]
    assert [r.native_id for r in pg.search(Filters(text="now"))] == ["2"]
    assert pg.ids_starting("fleet:n") == ["fleet:nul\x00id"]
    stats = {s["source"]: s for s in pg.source_stats()}
    assert stats["fleet"]["entries"] == 3 and stats["fleet"]["failures"] == 3


def test_entries_of_one_instant_keep_batch_order(pg: PostgresStore) -> None:
    at = NOW - timedelta(minutes=5)
    batch = [entry(str(i), f"m{i}", timestamp=at) for i in range(1200)]  # more than 1000 slots
    pg.commit_batch("fleet", batch, None, provider="fleetit")
    got = [r.native_id for r in pg.search(Filters(), limit=None)]
    assert got == [str(i) for i in reversed(range(1200))]


# -- the same search results as the SQLite store ------------------------------------------------

WORDS = ["invoice", "stock", "sync", "vehicle", "bağlantı", "σφάλμα", "Straße", "order"]
ODD = [
    "POL-358 failed for x@y.com at v1.2.3",
    "foo_bar naïve café ﬁle",
    "İSTANBUL depo ΣΦΆΛΜΑ ＡＢＣ",
    "東京都 hello हिन्दी",
    "rocket 🚀 launch \ue123mark",
]
ERRORS = ["Timeout while contacting upstream", "Validation failed: sku missing", "KAPI KAPALI"]
SOURCES = [("fleet", "fleetit"), ("shop-1", "shopify"), ("legacy", "old")]


def seeded_batches() -> list[tuple[str, str, list[Entry]]]:
    """(source, provider, entries): "legacy" changed provider once, so two batches."""
    rng = random.Random(7)
    out = []
    for source, provider in SOURCES:
        batches: dict[str, list[Entry]] = {}
        for i in range(120):
            roll = rng.random()
            status = (
                Status.FAILURE if roll < 0.25 else Status.PENDING if roll < 0.35 else Status.SUCCESS
            )
            words = rng.choices(WORDS, k=3)
            if i % 9 == 0:
                words.append(rng.choice(ODD))
            e = Entry(
                native_id=str(i),
                timestamp=NOW - timedelta(hours=rng.random() * 24 * 6),
                status=status,
                message=" ".join(words),
                error=rng.choice(ERRORS) if status is Status.FAILURE else None,
                raw={"order": f"ORD-{i}", "note": rng.choice(ODD) if i % 5 == 0 else "x"},
            )
            polled_by = "new" if source == "legacy" and i % 2 else provider
            batches.setdefault(polled_by, []).append(e)
        out += [(source, polled_by, batch) for polled_by, batch in batches.items()]
    return out


@pytest.fixture(scope="module")
def twins(
    pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, PostgresStore]]:
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE twins")
    path = tmp_path_factory.mktemp("twins") / "logd.db"
    with Store(path) as lite, PostgresStore(pg_cluster.url("twins")) as pg:
        for source, provider, batch in seeded_batches():
            lite.commit_batch(source, batch, None, provider=provider)
            pg.commit_batch(source, batch, None, provider=provider)
        yield lite, pg


QUERIES = [
    ("invoice", False),
    ("timeout", False),
    ("ORD-17", False),
    ("absent", False),
    ('"sku missing"', False),
    ("BAĞLANTI", False),
    ("strasse", False),
    ("pol-358", False),
    ("x@y.com", False),
    ("v1.2.3", False),
    ("foo_bar", False),
    ("naive CAFE file", False),
    ("istanbul σφαλμα abc", False),
    ("東京都", False),
    ("हिन्दी", False),
    ("\ue123mark", False),
    ('"order invoice', False),
    ("time* OR stock", True),
    ("error:kapı NOT sync", True),
    ("message:(invoice OR vehicle) NOT error:timeout", True),
    ('"sync order"* OR "ORD-1"*', True),
    ("message:ord*", True),
    ("Stock SYNC", False),
    ("st* NOT (sync OR order) NOT vehicle", True),
]


def test_tokens_are_the_words_fts5_stores(twins: tuple[Store, PostgresStore]) -> None:
    lite, pg = twins
    lite.db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, entries_fts, row)"
    )
    fts5 = {
        r[0] for r in lite.db.execute("SELECT term FROM temp.vocab WHERE term NOT LIKE 'logdtag%'")
    }
    with psycopg.connect(pg.url) as conn:
        ours = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT word FROM entries, ts_stat("
                "'SELECT words FROM entries') AS s(word, ndoc, nentry)"
            )
        }
    assert ours == fts5


@pytest.mark.parametrize(("text", "fts"), QUERIES)
def test_every_query_finds_what_sqlite_finds(
    twins: tuple[Store, PostgresStore], text: str, fts: bool
) -> None:
    lite, pg = twins
    cells = 0
    for statuses, sources, (since, until) in itertools.product(
        [(), ("failure",), ("success", "pending")],
        [(), ("fleet",), ("fleet", "legacy")],
        [(None, None), (3, None), (5, 1)],
    ):
        f = Filters(
            text=text,
            fts=fts,
            statuses=statuses,
            sources=sources,
            since=None if since is None else NOW - timedelta(days=since),
            until=None if until is None else NOW - timedelta(days=until),
        )
        for limit in (None, 5):
            want = [r.id for r in lite.search(f, limit=limit)]
            assert [r.id for r in pg.search(f, limit=limit)] == want, (f, limit)
            cells += bool(want)
    assert cells > 0 or text == "absent"


def test_counts_and_names_are_what_sqlite_says(
    twins: tuple[Store, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    lite, pg = twins
    since = NOW - timedelta(days=3)
    for by in ("source", "provider", "status"):
        assert pg.stats(since=since, by=by) == lite.stats(since=since, by=by)
    for kind in ("source", "provider"):
        assert pg.names(kind) == lite.names(kind)  # type: ignore[arg-type]
    assert pg.names("source", only="fleet") == ["fleet"] and pg.names("source", only="x") == []
    # Local days and hours: the zone the C library reads (TZ), on both stores.
    for zone in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        for by in ("day", "hour"):
            for local in (False, True):
                got = pg.bucket_stats(since=since, by=by, local=local)  # type: ignore[arg-type]
                assert got == lite.bucket_stats(since=since, by=by, local=local), (zone, by)
    monkeypatch.delenv("TZ")
    time.tzset()


def test_a_reader_reads_and_refuses_to_write(twins: tuple[Store, PostgresStore]) -> None:
    _, pg = twins
    reader = open_reader(pg.url)
    try:
        assert [r.id for r in reader.search(Filters(text="invoice"), limit=3)] == [
            r.id for r in pg.search(Filters(text="invoice"), limit=3)
        ]
        with pytest.raises(StoreError, match="opened read-only"):
            reader.start_run("fleet")
    finally:
        reader.close()


def test_queries_compile_to_tsquery() -> None:
    def compiled(text: str) -> str:
        node = parse(text)
        assert node is not None
        return search.tsquery(node)

    assert compiled('"sku missing"') == "('sku' <-> 'missing')"
    assert compiled("time* OR stock") == "('time':* | 'stock')"
    assert compiled("error:kapı NOT sync") == "('kapi':B & !'sync')"
    assert compiled('message:"a b"*') == "('a':A <-> 'b':*A)"
    assert compiled("it's") == "('it' <-> 's')"


def test_a_phrase_never_spans_two_columns(pg: PostgresStore) -> None:
    pg.commit_batch("fleet", [entry("1", "upstream", error="timeout")], None, provider="fleetit")
    assert pg.search(Filters(text='"upstream timeout"')) == []
    assert len(pg.search(Filters(text="upstream timeout"))) == 1


def test_newest_first_walks_the_key_index_without_a_sort(pg: PostgresStore) -> None:
    # Enough rows that a sort would cost more than walking the index (the planner's choice).
    at = NOW - timedelta(days=2)
    batch = [entry(str(i), "m", timestamp=at + timedelta(seconds=i)) for i in range(5000)]
    pg.commit_batch("fleet", batch, None, provider="fleetit")
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("ANALYZE entries")
    for filters in (Filters(), Filters(sources=("fleet",)), Filters(since=NOW - timedelta(1))):
        plan = pg.explain(filters, limit=50)
        assert "Sort" not in plan and "Index Scan Backward" in plan, plan


def test_a_rare_word_is_looked_up_in_the_word_index(pg: PostgresStore) -> None:
    # Beyond the newest WALK entries, a word with fewer matches than the limit is found from
    # the GIN index and sorted, not by testing every entry newest first.
    at = NOW - timedelta(days=2)
    batch = [entry(str(i), "common", timestamp=at + timedelta(seconds=i)) for i in range(3000)]
    batch[10].message = "common needle"
    pg.commit_batch("fleet", batch, None, provider="fleetit")
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("ANALYZE entries")
    assert [r.native_id for r in pg.search(Filters(text="needle"))] == ["10"]
    assert len(pg.search(Filters(text="common"))) == 50
    plan = pg.explain(Filters(text="needle"))
    assert "Bitmap Index Scan on entries_words" in plan and "Seq Scan" not in plan, plan


# -- leases: one instance polls a source; a lapsed holder writes nothing ----------------------

FLEET = "source:fleet"


def lapse(pg: PostgresStore, name: str = FLEET) -> None:
    """Make lease `name` expire now (as if its holder stopped renewing it)."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE leases SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE name = %s",
            [name],
        )


def test_two_holders_one_lease(pg: PostgresStore) -> None:
    a = pg.claim_lease(FLEET, "host-a:1", ttl=30)
    assert a is not None
    assert pg.claim_lease(FLEET, "host-b:2", ttl=30) is None
    renewed = pg.claim_lease(FLEET, "host-a:1", ttl=60)
    assert renewed is not None and renewed.token == a.token  # a renewal keeps the token
    assert renewed.expires_at > a.expires_at
    assert [(x.name, x.holder) for x in pg.leases()] == [(FLEET, "host-a:1")]
    pg.release_lease(a)
    b = pg.claim_lease(FLEET, "host-b:2", ttl=30)
    assert b is not None and b.token > a.token
    pg.release_lease(a)  # no longer a's: nothing happens
    assert pg.claim_lease(FLEET, "host-a:1", ttl=30) is None
    assert pg.claim_lease("source:other", "host-a:1", ttl=30) is not None  # one per name


def test_a_lapsed_lease_is_taken_over_and_its_holder_is_fenced(pg: PostgresStore) -> None:
    a = pg.claim_lease(FLEET, "host-a:1", ttl=30)
    assert a is not None
    pg.commit_batch("fleet", [entry("1", "first")], {"page": 1}, lease=a, provider="fleetit")
    lapse(pg)
    b = pg.claim_lease(FLEET, "host-b:2", ttl=30)
    assert b is not None and b.token > a.token
    pg.commit_batch("fleet", [entry("2", "second")], {"page": 2}, lease=b, provider="fleetit")
    # A wakes up with its old batch: nothing of it is written, the cursor stays where B left it.
    with pytest.raises(LeaseLost, match="lost it to host-b:2"):
        pg.commit_batch(
            "fleet",
            [entry("3", "stale"), entry("2", "stale")],
            {"page": 1},
            lease=a,
            provider="fleetit",
        )
    assert pg.cursor("fleet") == {"page": 2}
    assert [r.message for r in pg.search(Filters())] == ["second", "first"]
    # The same holder claiming again after a lapse is a new holding too: a new token.
    lapse(pg)
    b2 = pg.claim_lease(FLEET, "host-b:2", ttl=30)
    assert b2 is not None and b2.token > b.token
    with pytest.raises(LeaseLost):
        pg.commit_batch("fleet", [entry("4", "old token")], None, lease=b, provider="fleetit")
    with pytest.raises(LeaseLost):
        pg.set_sink_position("otlp", 5, lease=b)
    assert pg.sink_position("otlp") == 0


def test_a_lapsed_lease_commits_nothing_even_before_a_takeover(pg: PostgresStore) -> None:
    a = pg.claim_lease(FLEET, "host-a:1", ttl=30)
    assert a is not None
    lapse(pg)
    with pytest.raises(LeaseLost, match="lapsed"):
        pg.commit_batch("fleet", [entry("1", "late")], {"page": 9}, lease=a, provider="fleetit")
    assert pg.cursor("fleet") is None and pg.count() == 0


def test_a_takeover_waits_for_the_batch_that_holds_the_lease(pg: PostgresStore) -> None:
    # The batch locks the lease row: expiring it (as a takeover would) waits until the batch
    # has committed under the lease, so no batch ever lands after a takeover.
    a = pg.claim_lease(FLEET, "host-a:1", ttl=30)
    assert a is not None
    inside, release = threading.Event(), threading.Event()

    def pause(tx: BatchTransaction, result: Any) -> None:
        inside.set()
        assert release.wait(30)

    writer = threading.Thread(
        target=pg.commit_batch,
        args=("fleet", [entry("1", "m")], {"p": 1}),
        kwargs={"lease": a, "hooks": [pause], "provider": "fleetit"},
    )
    writer.start()
    assert inside.wait(30)
    expired = threading.Event()

    def expire() -> None:
        lapse(pg)  # waits on the row lock the batch holds
        expired.set()

    other = threading.Thread(target=expire)
    other.start()
    assert not expired.wait(0.3)  # still blocked behind the batch's lock
    release.set()
    writer.join(30)
    other.join(30)
    assert expired.is_set() and pg.cursor("fleet") == {"p": 1}


# -- deliveries: each claimed by one holder ------------------------------------------------------


def queue(pg: PostgresStore, n: int, sinks: tuple[str, ...] = ("ops",)) -> list[str]:
    ids = [f"dlv_{i:04d}" for i in range(n)]

    def hook(tx: BatchTransaction, result: Any) -> None:
        for i, delivery_id in enumerate(ids):
            sink = sinks[i % len(sinks)]
            tx.enqueue(NewDelivery(delivery_id, sink, "fleet", "fleetit", 1, b"{}"), NOW)

    pg.commit_batch("fleet", [], None, hooks=[hook], provider="fleetit")
    return ids


def test_claims_by_two_instances_never_overlap(pg: PostgresStore, pg_url: str) -> None:
    sinks = tuple(f"sink-{i}" for i in range(5))
    ids = queue(pg, 200, sinks)
    with PostgresStore(pg_url) as other:
        got: dict[str, list[str]] = {"host-a:1": [], "host-b:2": []}
        start = threading.Barrier(2)

        def drain(holder: str, store: PostgresStore) -> None:
            # Each instance sends what it claims (recording it done) until nothing is due.
            start.wait(10)
            while True:
                claimed = [d for s in sinks for d in store.claim_due(s, holder, 60, NOW, limit=7)]
                if not claimed and not store.due_sinks(NOW):
                    return
                got[holder] += [d.delivery_id for d in claimed]
                store.record_attempts([Attempt(d.delivery_id, "done", 200, None, NOW, NOW)
                                       for d in claimed])  # fmt: skip

        threads = [
            threading.Thread(target=drain, args=("host-a:1", pg)),
            threading.Thread(target=drain, args=("host-b:2", other)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    both = got["host-a:1"] + got["host-b:2"]
    assert sorted(both) == ids  # every one claimed, none twice


def test_a_dead_daemons_claims_are_void_once_its_own_lease_lapses(pg: PostgresStore) -> None:
    # A daemon killed on another host leaves claims for a ttl of minutes; its own lease
    # (`daemon:<id>`, renewed by its heartbeat) lapsing voids them for everyone at once.
    ids = queue(pg, 5)
    assert pg.claim_lease("daemon:host-a:1:aa", "host-a:1:aa", 0.5) is not None
    assert [d.delivery_id for d in pg.claim_due("ops", "host-a:1:aa", 600, NOW)] == ids
    assert pg.claim_due("ops", "host-b:2:bb", 600, NOW) == []  # its daemon is alive
    deadline = time.monotonic() + 10
    while not (taken := pg.claim_due("ops", "host-b:2:bb", 600, NOW)):
        assert time.monotonic() < deadline, "the dead daemon's claims never became free"
        time.sleep(0.1)
    assert [d.delivery_id for d in taken] == ids
    # A holder with no daemon lease (`logd sync`) keeps its claims for their ttl.
    more = [f"dlv_x{i}" for i in range(2)]

    def hook(tx: BatchTransaction, result: Any) -> None:
        for delivery_id in more:
            tx.enqueue(NewDelivery(delivery_id, "other", "fleet", "fleetit", 1, b"{}"), NOW)

    pg.commit_batch("fleet", [], None, hooks=[hook], provider="fleetit")
    assert len(pg.claim_due("other", "sync-host:7", 600, NOW)) == 2
    assert pg.claim_due("other", "host-b:2:bb", 600, NOW) == []


def test_a_claim_skips_rows_another_transaction_has_locked(pg: PostgresStore) -> None:
    ids = queue(pg, 10)
    with psycopg.connect(pg.url) as conn:
        conn.execute("SELECT id FROM outbox ORDER BY id LIMIT 4 FOR UPDATE")  # held open
        done: list[list[str]] = []

        def claim() -> None:
            done.append([d.delivery_id for d in pg.claim_due("ops", "host-a:1", 60, NOW)])

        t = threading.Thread(target=claim)
        t.start()
        t.join(10)
        assert done == [ids[4:]]  # did not wait for the lock: took the others
    # One lane, one sender: while a's claims run, another holder gets none of the lane...
    assert pg.claim_due("ops", "host-b:2", 60, NOW) == []
    # ...but named rows no claim covers, and then not again until that claim ends.
    assert [d.delivery_id for d in pg.claim_due("ops", "host-b:2", 60, NOW, ids=ids)] == ids[:4]
    assert pg.claim_due("ops", "host-c:3", 60, NOW, ids=ids) == []
    pg.record_attempts([Attempt(ids[0], "pending", 503, "down", NOW, NOW)])
    assert [d.delivery_id for d in pg.claim_due("ops", "host-c:3", 60, NOW, ids=ids)] == [ids[0]]
    # Rows claimed and not sent go back to the lane with their claims ended.
    pg.record_attempts([], hold=ids[4:], until=NOW)
    assert pg.claim_due("ops", "host-c:3", 60, NOW, ids=ids[4:])[0].delivery_id == ids[4]
    # The holders died: their claims lapse after their 60 s (on the clock claims use).
    later = NOW + timedelta(seconds=61)
    assert [d.delivery_id for d in pg.claim_due("ops", "host-d:4", 60, later)] == ids


def test_the_outbox_reads_as_the_interface_says(pg: PostgresStore) -> None:
    ids = queue(pg, 3)
    later = NOW + timedelta(minutes=5)
    pg.record_attempts([Attempt(ids[1], "pending", 503, "down", later, NOW)])
    assert pg.due_sinks(NOW) == ["ops"]
    # First in, first out: the row after the one waiting for its retry waits too.
    assert [d.delivery_id for d in pg.claim_due("ops", "h", 60, NOW)] == [ids[0]]
    assert pg.next_due_at(["ops"]) == NOW
    pg.record_attempts([Attempt(ids[0], "done", 200, None, NOW, NOW)])
    assert pg.next_due_at(["ops"]) == later
    assert pg.make_due([ids[1], "dlv_unknown"], NOW) == [ids[1]]
    assert pg.outbox_counts("sink") == {"ops": {"pending": 2, "dead": 0, "done": 1}}
    listed = pg.list_deliveries(state="pending")
    assert [d.delivery_id for d in listed] == [ids[2], ids[1]]
    assert listed[0].summary()["webhook"] == "ops" and listed[0].body == b"{}"


# -- --follow: no batch is passed over while it is still committing ---------------------------


def test_follow_waits_for_a_batch_committing_with_an_older_transaction(pg: PostgresStore) -> None:
    mark = pg.last_change()
    assert mark == 0
    inside, release = threading.Event(), threading.Event()

    def pause(tx: BatchTransaction, result: Any) -> None:
        inside.set()
        assert release.wait(30)

    slow = threading.Thread(
        target=pg.commit_batch,
        args=("fleet", [entry("slow", "slow")], None),
        kwargs={"hooks": [pause], "provider": "fleetit"},
    )
    slow.start()
    assert inside.wait(30)
    # (Another time: a batch taking the same key would wait for the slow one, rightly.)
    fast = entry("fast", "fast", timestamp=NOW - timedelta(hours=2))
    pg.commit_batch("shop", [fast], None, provider="fleetit")
    # The fast batch committed, but an older transaction is still open: reading past it now
    # would move the mark beyond the slow batch, which would then never be shown.
    assert pg.changes_after(mark) == []
    assert pg.last_change() == 0
    release.set()
    slow.join(30)
    rows = pg.changes_after(mark)
    assert [r.native_id for _, r in rows] == ["slow", "fast"]
    assert pg.last_change() == rows[-1][0]
    assert pg.changes_after(rows[-1][0]) == []
    pg.commit_batch("fleet", [entry("slow", "changed")], None, provider="fleetit")
    assert [r.message for _, r in pg.changes_after(rows[-1][0])] == ["changed"]
    only = pg.changes_after(mark, filters=Filters(sources=("shop",)))
    assert [r.native_id for _, r in only] == ["fast"]


def test_run_counters_commit_with_the_batch(pg: PostgresStore) -> None:
    run = pg.start_run("fleet")
    batch = [entry("1", "a"), entry("2", "b", status=Status.SUCCESS)]
    pg.commit_batch("fleet", batch, None, run=RunProgress(run, pages=2), provider="fleetit")
    pg.finish_run(run, requests=3)
    assert pg.unfinished_runs() == {}
    with psycopg.connect(pg.url) as conn:
        row = conn.execute(
            "SELECT pages, new, failures, requests FROM poll_runs WHERE id = %s", [run]
        ).fetchone()
    assert row == (2, 2, 1, 3)


def test_each_daemon_keeps_its_own_schedule(pg: PostgresStore) -> None:
    pg.set_schedule("host-a:1", "fleet", NOW, 60, 0)
    pg.set_schedule("host-b:2", "shop", NOW, 30, 2)
    pg.clear_schedule("host-a:1")  # a restarting daemon clears only its own rows
    assert pg.schedule() == {
        "shop": {
            "daemon": "host-b:2",
            "next_run": NOW.isoformat(timespec="seconds"),
            "interval": 30,
            "consecutive_failures": 2,
        }
    }


# -- retention ---------------------------------------------------------------------------------


def test_retention_deletes_old_entries_only(pg: PostgresStore) -> None:
    old = [entry(f"o{i}", "old", timestamp=NOW - timedelta(days=40)) for i in range(12)]
    pg.commit_batch("fleet", [*old, entry("new", "new")], None, provider="fleetit")
    result = pg.apply_retention(30 * 86_400, chunk=5)
    assert result.entries == 12
    assert [r.native_id for r in pg.search(Filters(), limit=None)] == ["new"]
    assert pg.search(Filters(text="old")) == []


# -- errors: one line, what to do, no password --------------------------------------------------


def test_a_wrong_password_says_so_and_never_shows_it(pg_cluster: Cluster) -> None:
    url = pg_cluster.url(user=PASSWORD_ROLE).replace("@", ":Wr0ng-s3cret@", 1)
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    text = str(caught.value)
    assert "refused the login" in text and "Wr0ng-s3cret" not in text
    assert f"{PASSWORD_ROLE}:***@" in text and "\n" not in text


def test_a_missing_database_names_it_and_the_fix(pg_cluster: Cluster) -> None:
    url = pg_cluster.url("nosuchdb", user=PASSWORD_ROLE).replace("@", f":{PASSWORD}@", 1)
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    text = str(caught.value)
    assert "'nosuchdb' does not exist" in text and "createdb nosuchdb" in text
    assert PASSWORD not in text


def test_a_password_in_the_query_string_is_masked_too() -> None:
    url = "postgresql://logd@db.internal:5433/logd?password=s3cr3t-pw&sslmode=require"
    assert redacted_url(url) == (
        "postgresql://logd@db.internal:5433/logd?password=***&sslmode=require"
    )
    assert redacted_url("postgresql://logd:p%40ss-word@db/logd") == "postgresql://logd:***@db/logd"
    assert redacted_url("postgresql://db/logd") == "postgresql://db/logd"


def test_a_server_that_is_down_says_where(tmp_path: Path) -> None:
    url = f"postgresql://logd:hunter2-pw@/logd?host={tmp_path}"
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    text = str(caught.value)
    assert "cannot reach the PostgreSQL server" in text and str(tmp_path) in text
    assert "hunter2-pw" not in text and "start it" in text
