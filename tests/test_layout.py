"""The layout keeps the store behind its interface: no SQL and no database driver outside
the backends (`logd/store/sqlite/`, `logd/store/postgres/`), so a backend touches no engine,
delivery, daemon or CLI code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQLITE_BACKEND = ROOT / "src" / "logd" / "store" / "sqlite"
POSTGRES_BACKEND = ROOT / "src" / "logd" / "store" / "postgres"

#: What SQL looks like in a string: a statement's opening words (upper case, as logd
#: writes SQL). A lone word is not SQL: the Pegasus simulator's HTTP method "DELETE" is not.
SQL = re.compile(
    r"\bSELECT\s+\S.*\bFROM\b"
    r"|\bINSERT\s+(OR\s+\w+\s+)?INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\bPRAGMA\s+\w"
    r"|\bCREATE\s+(TEMP\s+|UNIQUE\s+|VIRTUAL\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b",
    re.DOTALL,
)
DRIVERS = ("sqlite3", "sqlite_utils", "psycopg", "psycopg_pool")

#: Imports of the SQLite backend's modules outside `logd/store/`, each for a reason:
ALLOWED_BACKEND_IMPORTS: set[tuple[str, str]] = set()


def _sources() -> list[Path]:
    files = sorted((ROOT / "src" / "logd").rglob("*.py"))
    files += sorted(p for p in ROOT.glob("plugins/*/src/**/*.py"))
    backends = (SQLITE_BACKEND, POSTGRES_BACKEND)
    return [f for f in files if not any(b in f.parents for b in backends)]


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal, f-strings as their literal parts joined (what the SQL is)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "?"
                for v in node.values
            )
            out.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def test_there_are_sources_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert "src/logd/engine/poller.py" in names and "src/logd/cli/query.py" in names
    assert not any(
        n.startswith(("src/logd/store/sqlite/", "src/logd/store/postgres/")) for n in names
    )


def test_no_sql_outside_the_sqlite_backend() -> None:
    found = []
    for path in _sources():
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if SQL.search(text):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}")
    assert not found, "SQL outside logd/store/sqlite/ (add a Store method):\n" + "\n".join(found)


def test_no_sqlite_driver_or_backend_import_outside_the_store() -> None:
    found = []
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in DRIVERS:
                    found.append(f"{name}:{node.lineno}: import {module}")
                outside = not name.startswith("src/logd/store/")
                allowed = (name, module) in ALLOWED_BACKEND_IMPORTS
                if module.startswith("logd.store.sqlite") and outside and not allowed:
                    found.append(f"{name}:{node.lineno}: import {module}")
    assert not found, "the SQLite backend used outside logd/store/:\n" + "\n".join(found)


def test_the_sql_pattern_finds_what_it_is_for() -> None:
    # Would the checks above catch the SQL that used to sit in the engine and the CLI?
    assert SQL.search("UPDATE poll_runs SET pages = pages + ?")
    assert SQL.search("SELECT coalesce(max(updated_at), '') FROM entries")
    assert SQL.search("PRAGMA incremental_vacuum(2000)")
    assert SQL.search("INSERT INTO webhook_outbox (delivery_id) VALUES (?)")
    assert not SQL.search("DELETE") and not SQL.search("Select a source to update")
