# ruff: noqa: RUF001 - Turkish and Greek words are what these tests are about
"""The search language (`logd query`, `--fts`, webhook `match`) and folded full-text search.

One parser for every place a user types a search; its words are quoted by the FTS5 compiler,
so no text is read as FTS5 syntax; stored text and queries are folded alike (Turkish dotted
and dotless i, Greek accents and final sigma, German ß), and the store stays searchable by
the sqlite-utils CLI and Datasette.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from click.testing import CliRunner

from logd import Entry, Status
from logd.cli.main import cli
from logd.config.settings import load_settings
from logd.config.webhooks import match_problem
from logd.delivery.sinks.webhook import outbox_hook
from logd.errors import ConfigError, QueryError
from logd.plugin.testing import write_config
from logd.store.interface import Filters
from logd.store.query_language import And, Column, Not, Or, Term, fold, parse
from logd.store.sqlite.migrations import MIGRATIONS
from logd.store.sqlite.retention import apply_retention
from logd.store.sqlite.search import fts5_match
from logd.store.sqlite.store import Store

NOW = datetime.now(UTC)


def make(native_id: str, message: str, *, hours_ago: float = 1, **kw: Any) -> Entry:
    e = Entry(
        native_id=native_id,
        timestamp=NOW - timedelta(hours=hours_ago),
        status=kw.pop("status", Status.FAILURE),
        message=message,
        **kw,
    )
    return e


def ids(db: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["query", "--db", str(db), "-f", "json", "-n", "0", *args])
    assert result.exit_code == 0, result.output
    return sorted(row["native_id"] for row in json.loads(result.output))


def vocabulary(store: Store) -> set[str]:
    """Every word the FTS index holds (what FTS5 itself stored), tag words aside."""
    store.db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, entries_fts, row)"
    )
    rows = store.db.execute("SELECT term FROM temp.vocab WHERE term NOT LIKE 'logdtag%'")
    return {r[0] for r in rows.fetchall()}


# -- the parser -------------------------------------------------------------------------------


def test_expressions_parse_to_one_tree() -> None:
    assert parse("timeout OR refused") == Or((Term("timeout"), Term("refused")))
    assert parse("a b OR c AND d") == Or((And((Term("a"), Term("b"))), And((Term("c"), Term("d")))))
    assert parse("a NOT b NOT c") == Not(Term("a"), (Term("b"), Term("c")))
    assert parse('error:(x OR "y z") time*') == And(
        (Column("error", Or((Term("x"), Term("y z")))), Term("time", prefix=True))
    )
    assert parse("Message:x") == Column("message", Term("x"))
    assert parse('"say ""hi"""') == Term('say "hi"')
    # What FTS5 reads as syntax is a word here, quoted by the compiler.
    assert parse("POL-358") == Term("POL-358")
    assert parse("a:b NEAR ^x +y") == And((Term("a:b"), Term("NEAR"), Term("^x"), Term("+y")))
    assert fts5_match(parse("POL-358 OR a:b")) == '"POL-358" OR "a:b"'  # type: ignore[arg-type]
    assert (
        fts5_match(parse('x NOT (y OR error:"q""z"*)'))  # type: ignore[arg-type]
        == '"x" NOT ("y" OR ({error failure_error pending_error invalid_error} : "q""z"*))'
    )


def test_words_without_letters_or_digits_are_left_out() -> None:
    assert parse("*") is None and parse("- ^ +") is None and parse("—") is None
    assert parse("timeout - *") == Term("timeout")
    assert parse("x NOT -") == Term("x")
    assert parse("", plain=True) is None and parse('"', plain=True) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"sku', "the quote at position 1 is never closed"),
        ("a AND", "'AND' at position 3 needs a word after it"),
        ("OR a", "'OR' at position 1 needs a word before it"),
        ("NOT a", "'NOT' at position 1 needs a word before it"),
        ("- NOT a", "'NOT' at position 3 needs a word before it"),
        ("a AND OR b", "'AND' at position 3 needs a word after it"),
        ("(a OR b", "'(' at position 1 is never closed"),
        ("a)", "')' at position 2 has no ( to close"),
        ("x ()", "'(' at position 3 opens an empty group"),
        ("x error: OR y", "'error:' at position 3 needs a word"),
        ("(" * 17 + "a" + ")" * 17, "'(' at position 17 nests parentheses deeper than 16"),
    ],
)
def test_expression_mistakes_name_the_problem_and_position(text: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_nesting_is_bounded_below_what_fts5_can_parse() -> None:
    # FTS5's parser stack overflowed at 33 operators deep: the parser stops well before.
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(message, error, search_text)")
    for shape in ("a OR b c NOT message:({})", "a NOT ({})", "x NOT (y OR ({}) z)"):
        text = "w"
        for _ in range(15):
            text = shape.format(text)
        try:
            node = parse(text)
        except QueryError as exc:
            assert "deep" in str(exc)
            continue
        assert node is not None
        conn.execute("SELECT rowid FROM t WHERE t MATCH ?", [fts5_match(node)]).fetchall()


def test_plain_words_are_never_syntax() -> None:
    assert parse("timeout OR refused", plain=True) == And(
        (Term("timeout"), Term("OR"), Term("refused"))
    )
    assert parse('say "hi there" (now*', plain=True) == And(
        (Term("say"), Term("hi there"), Term("(now*"))
    )
    assert parse('open "quote', plain=True) == And((Term("open"), Term("quote")))


# -- folding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("BAĞLANTI HATASI", "bağlantı hatası"),
        ("İSTANBUL", "istanbul"),
        ("KAPI", "kapı"),
        ("ΑΣΦΑΛΕΙΑ ΣΦΑΛΜΑ", "ασφάλεια σφάλμα"),
        ("Σφάλμα σύνδεσης", "ΣΦΑΛΜΑ ΣΥΝΔΕΣΗΣ"),
        ("λόγος", "ΛΟΓΟΣ"),
        ("Straße", "STRASSE"),
        ("STRAẞE", "strasse"),
        ("ﬁle", "FILE"),
    ],
)
def test_fold_maps_spellings_of_one_word_alike(one: str, other: str) -> None:
    assert fold(one).lower() == fold(other).lower()


def test_fold_leaves_ascii_alone() -> None:
    text = "Timeout while contacting Fleetio"
    assert fold(text) is text


# -- logd query -------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "logd.db"
    with Store(path) as store:
        store.commit_batch(
            "akinon",
            [
                make("tr-upper", "BAĞLANTI HATASI", error="KAPI KAPALI"),
                make("tr-lower", "bağlantı hatası", raw={"şehir": "İstanbul"}),
                make("el-upper", "ΣΦΑΛΜΑ ΣΥΝΔΕΣΗΣ"),
                make("el-lower", "σφάλμα σύνδεσης"),
                make("de", "Straße gesperrt", error="Größe"),
                make("de-ss", "STRASSE GESPERRT"),
                make("pol", "Order POL-358 failed", error="a:b ^x +y NEAR"),
                make("ok", "synced", status=Status.SUCCESS),
            ],
            None,
            provider="akinon",
        )
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bağlantı hatası", ["tr-lower", "tr-upper"]),
        ("BAĞLANTI HATASI", ["tr-lower", "tr-upper"]),
        ("baglanti", ["tr-lower", "tr-upper"]),
        ("kapı", ["tr-upper"]),
        ("istanbul", ["tr-lower"]),
        ("İSTANBUL", ["tr-lower"]),
        ("σφάλμα", ["el-lower", "el-upper"]),
        ("ΣΎΝΔΕΣΗΣ", ["el-lower", "el-upper"]),
        ("συνδεσησ", ["el-lower", "el-upper"]),
        ("straße", ["de", "de-ss"]),
        ("STRASSE", ["de", "de-ss"]),
        ("grösse", ["de"]),
    ],
)
def test_search_folds_case_and_accents_both_ways(db: Path, text: str, expected: list[str]) -> None:
    assert ids(db, text) == expected
    assert ids(db, "--fts", text) == expected


def test_fts_words_that_are_fts5_syntax_run(db: Path) -> None:
    # POL-358 was `no such column: 358` and a traceback.
    assert ids(db, "--fts", "POL-358") == ["pol"]
    assert ids(db, "--fts", "error:a:b") == ["pol"]
    assert ids(db, "--fts", "POL-358 OR kapı") == ["pol", "tr-upper"]
    assert ids(db, "--fts", "message:(POL-3*) NOT synced") == ["pol"]
    assert ids(db, "--fts", "bağ* NOT kapı") == ["tr-lower"]
    for text in ["^x", "+y", "NEAR", "NEAR(a b)", "“POL”", "POL—358", "a:b:c", "x*y", "*"]:
        result = CliRunner().invoke(cli, ["query", "--db", str(db), "--fts", text])
        assert result.exit_code == 0, (text, result.output)


@pytest.mark.parametrize("text", ['"', '"POL', "(", ")", "AND", "a OR", "NOT a", "error:"])
def test_fts_mistakes_are_one_line_exit_2(db: Path, text: str) -> None:
    result = CliRunner().invoke(cli, ["query", "--db", str(db), "--fts", text])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("error: ") and ("position" in lines[0] or "end" in lines[0])
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "Traceback" not in result.output


@pytest.mark.parametrize("text", ['"', "POL-358", "AND (", "a:b", '"unclosed', "*", ")(", "\\"])
def test_plain_text_never_fails(db: Path, text: str) -> None:
    result = CliRunner().invoke(cli, ["query", "--db", str(db), text])
    assert result.exit_code == 0, result.output
    assert "drop --fts" not in result.output


# -- webhooks ---------------------------------------------------------------------------------


def settings_with(tmp_path: Path, match: str) -> Any:
    source = {"name": "akinon", "provider": "fleetit", "base_url": "http://127.0.0.1:9"}
    source["token"] = "t"
    webhook = {"name": "ops", "url": "http://127.0.0.1:9/h", "secret": "s" * 32, "match": match}
    return load_settings(write_config(tmp_path, [source], webhooks=[webhook]))


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("bağlantı", ["tr-lower", "tr-upper"]),
        ("BAGLANTI", ["tr-lower", "tr-upper"]),
        ("σφαλμα OR strasse", ["de", "de-ss", "el-lower", "el-upper"]),
        ("POL-358", ["pol"]),
        ("error:kapı", ["tr-upper"]),
    ],
)
def test_webhook_match_folds_like_query(tmp_path: Path, match: str, expected: list[str]) -> None:
    settings = settings_with(tmp_path, match)
    with Store(settings.database) as store:
        entries = [
            make("tr-upper", "BAĞLANTI HATASI", error="KAPI"),
            make("tr-lower", "bağlantı hatası"),
            make("el-upper", "ΣΦΑΛΜΑ"),
            make("el-lower", "σφάλμα"),
            make("de", "Straße"),
            make("de-ss", "STRASSE"),
            make("pol", "Order POL-358 failed"),
        ]
        store.commit_batch(
            "akinon", entries, None, hooks=[outbox_hook(settings.webhooks)], provider="akinon"
        )
        [delivery] = store.list_deliveries()
        body = json.loads(delivery.body)
    assert sorted(e["native_id"] for e in body["entries"]) == expected


@pytest.mark.parametrize(
    ("match", "problem"),
    [
        ('"open', "the quote at position 1 is never closed"),
        ("timeout AND", "'AND' at position 9 needs a word after it"),
        ("-", "has no word to search for"),
    ],
)
def test_webhook_match_is_checked_at_config_load(tmp_path: Path, match: str, problem: str) -> None:
    assert problem in (match_problem(match) or "")
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.match: .*" + problem[:10]):
        settings_with(tmp_path, match)


# -- keeping the index in step ----------------------------------------------------------------


def test_updates_moves_and_retention_take_folded_rows_out_of_the_index(tmp_path: Path) -> None:
    with Store(tmp_path / "logd.db") as store:
        store.commit_batch(
            "akinon", [make("1", "BAĞLANTI"), make("2", "σφάλμα")], None, provider="akinon"
        )
        store.commit_batch(
            "akinon", [make("3", "ÇOK ESKİ", hours_ago=24 * 60)], None, provider="akinon"
        )
        assert {"baglanti", "σφαλμα", "cok", "eski"} <= vocabulary(store)
        # Changed text: the old words leave the index, the new ones come in.
        store.commit_batch("akinon", [make("1", "ZAMAN AŞIMI")], None, provider="akinon")
        # A moved time moves the key: the row leaves the index and comes back under its new key.
        store.commit_batch("akinon", [make("2", "Straße", hours_ago=2)], None, provider="akinon")
        apply_retention(store, 30 * 86_400)
        assert vocabulary(store) == {"zaman", "asimi", "strasse"}
        assert store.db.execute("SELECT count(*) FROM entries_fts_docsize").fetchone()[0] == 2
        store.db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")
        assert [r.native_id for r in store.search(Filters(text="zaman aşımı"))] == ["1"]
        assert [r.native_id for r in store.search(Filters(text="STRASSE"))] == ["2"]


def test_migration_reindexes_an_existing_store_folded(tmp_path: Path) -> None:
    path = tmp_path / "logd.db"
    old = sqlite_utils.Database(path)
    old.execute("CREATE TABLE _logd_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for fn in MIGRATIONS[:5]:  # the store as the release before folding left it
        fn(old)
        old.execute("INSERT INTO _logd_migrations VALUES (?, '')", [fn.__name__])
    columns = "id, source, provider, native_id, timestamp, status, message, error, search_text"
    for key, message, error in [(1, "BAĞLANTI HATASI", "ΣΦΆΛΜΑ"), (2, "timeout", None)]:
        old.execute(
            f"INSERT INTO entries ({columns}, hash, first_seen, updated_at) "
            "VALUES (?, 'a', 'a', ?, '2024-01-01', 'failure', ?, ?, 'x', 'h', '', '')",
            [key, str(key), message, error],
        )
    old.execute(
        "INSERT INTO entries_fts (rowid, message, error, search_text) "
        "SELECT id, message, error, search_text FROM entries"
    )
    old.conn.commit()
    old.close()
    with Store(path) as store:
        triggers = store.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert triggers.fetchall() == []  # the store keeps FTS in step itself now
        assert vocabulary(store) == {"baglanti", "hatasi", "σφαλμα", "timeout", "x"}
        assert [r.native_id for r in store.search(Filters(text="bağlantı"))] == ["1"]
        assert [r.native_id for r in store.search(Filters(text="σφαλμα", fts=True))] == ["1"]
        assert [r.native_id for r in store.search(Filters(text="TIMEOUT"))] == ["2"]


def test_other_tools_still_search_the_store(db: Path) -> None:
    # The tokenizer is SQLite's own: the sqlite-utils CLI and Datasette need nothing of logd.
    sql = sqlite_utils.Database(db)
    assert sql["entries"].detect_fts() == "entries_fts"
    assert [r["native_id"] for r in sql["entries"].search("synced")] == ["ok"]
    exe = Path(sys.executable).with_name("sqlite-utils")
    if exe.exists():
        out = subprocess.run(
            [str(exe), "search", str(db), "entries", "gesperrt", "-c", "native_id"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert sorted(r["native_id"] for r in json.loads(out.stdout)) == ["de", "de-ss"]
    datasette_app = pytest.importorskip("datasette.app")

    async def fetch(word: str) -> list[str]:
        ds = datasette_app.Datasette([str(db)])
        response = await ds.client.get(f"/{db.stem}/entries.json?_search={word}&_shape=objects")
        assert response.status_code == 200, response.text
        return sorted(r["native_id"] for r in response.json()["rows"])

    assert asyncio.run(fetch("POL")) == ["pol"]
    assert asyncio.run(fetch("failed")) == ["pol"]
    assert asyncio.run(fetch("baglanti")) == ["tr-lower", "tr-upper"]  # folded words match
