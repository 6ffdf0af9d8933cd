"""Store faults: whatever the disk or another process does to the SQLite file, every command
says so in one line naming the file and what to do, exits non-zero, and loses nothing stored.

Faults are real ones: a 2 MB tmpfs that fills up, a second process holding the write lock,
garbage written over database pages, an immutable file, a read-only mount, a directory in the
file's place. Faults that need root (mount, chattr) skip, saying why, where they cannot run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from logd_fleetit import FleetITSimulator

from logd.cli.main import cli
from logd.plugin.testing import SyncRun, write_config
from logd.store.sqlite import store as store_module

READ_COMMANDS = (
    ["query", "-n", "0"],
    ["show", "fleet:1"],
    ["status"],
    ["stats"],
    ["webhooks", "list"],
)


@pytest.fixture
def sim() -> Iterator[FleetITSimulator]:
    with FleetITSimulator(records=250) as s:
        yield s


def logd(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_line(result: Result, *expected: str) -> str:
    """The single `error:` line a failed command printed on stderr; it names every `expected`."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def stored_ids(config: Path) -> list[str]:
    """Every stored entry id, read back through `logd query` (exit 0 asserted)."""
    result = logd("query", "-c", str(config), "-n", "0", "-f", "ndjson")
    assert result.exit_code == 0, result.output
    return [json.loads(line)["id"] for line in result.stdout.splitlines()]


def synced(tmp_path: Path, sim: FleetITSimulator, database: Path) -> Path:
    """A config storing `sim` in `database`, synced once (250 entries)."""
    config = write_config(tmp_path / "conf", [sim.demo_source("fleet")], database=str(database))
    result = logd("sync", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert len(stored_ids(config)) == 250
    return config


def _run(*cmd: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(cmd, 127, b"", str(exc).encode())


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount something on a new directory under tmp_path; skip (saying why) when not allowed."""
    mounted: list[Path] = []

    def do(*args: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = _run("mount", *args, str(target))
        if done.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} is not permitted here: {done.stderr.decode()}")
        mounted.append(target)
        return target

    yield do
    for target in reversed(mounted):
        _run("umount", "-l", str(target))


# -- full disk --------------------------------------------------------------------------------


def _fill(directory: Path) -> Path:
    """Write a file until the file system holding `directory` has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_mid_sync_is_one_line_and_loses_nothing(
    tmp_path: Path, sim: FleetITSimulator, mount: Callable[..., Path]
) -> None:
    disk = mount("-t", "tmpfs", "-o", "size=2m", "tmpfs")
    config = synced(tmp_path, sim, disk / "logd.db")
    filler = _fill(disk)
    sim.add_records(300)
    line = one_line(logd("sync", "-c", str(config)), str(disk / "logd.db"), "disk is full")
    assert "WAL" in line and "free space" in line
    # Reading needs a few bytes too (the -shm file): with none left, that is the same line.
    for command in READ_COMMANDS:
        one_line(logd(*command, "-c", str(config)), "disk is full")
    filler.unlink()
    assert len(stored_ids(config)) == 250  # nothing stored before was lost
    again = logd("sync", "-c", str(config))
    assert again.exit_code == 0, again.output
    ids = stored_ids(config)
    assert len(ids) == len(set(ids)) == 550  # the rolled-back batch came again, once


# -- a lock held past the busy timeout --------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_write_lock_held_by_another_process_names_it_and_the_wait(
    tmp_path: Path, sim: FleetITSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 200)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        sim.add_records(5)
        line = one_line(logd("sync", "-c", str(config)), str(database), "is locked")
        assert "busy timeout (0.2s)" in line
        assert re.search(rf"pid {holder.pid} \(python[\d.]*\) holds the write lock", line)
        assert len(stored_ids(config)) == 250  # readers are not blocked by a writer
    finally:
        holder.communicate("")
    again = logd("sync", "-c", str(config))
    assert again.exit_code == 0, again.output
    assert len(set(stored_ids(config))) == 255


def test_a_lock_taken_mid_poll_fails_that_poll_keeps_its_batches_and_the_next_one_resumes(
    tmp_path: Path, sim: FleetITSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    run = SyncRun(tmp_path, [sim.demo_source("fleet")])
    other = sqlite3.connect(run.store.path, isolation_level=None, check_same_thread=False)
    held: list[object] = []

    def take_lock_after_first_batch(report: object) -> None:
        if not held:
            other.execute("BEGIN IMMEDIATE")  # another writer, after page 1 committed
            held.append(report)

    [report] = run.engine.sync(run.settings.sources, progress=take_lock_after_first_batch)
    assert report.error is not None and "is locked" in report.error
    assert "busy timeout (0.1s)" in report.error and "internal error" not in report.error
    assert f"pid {os.getpid()} (this process) holds the write lock" in report.error
    stored = run.count()
    cursor = run.cursor("fleet")
    assert 0 < stored < 250 and cursor is not None  # page 1 and its cursor, nothing after
    other.execute("ROLLBACK")
    other.close()
    assert run.sync()["fleet"].ok
    assert run.count() == 250


# -- damaged files ----------------------------------------------------------------------------


def _damage(
    database: Path, *, keep_header: bool, pages: int | None = None, start: int | None = None
) -> None:
    """Overwrite pages with garbage: all, all but the first (`keep_header`), or `pages` of them
    from byte `start` (a page boundary) on."""
    page = 8192
    start = start if start is not None else page if keep_header else 0
    end = database.stat().st_size if pages is None else start + pages * page
    with open(database, "r+b") as f:
        f.seek(start)
        f.write(bytes((i * 7 + 13) % 256 for i in range(end - start)))


@pytest.mark.parametrize("keep_header", [True, False], ids=["pages", "header"])
def test_garbage_in_the_file_is_one_line_naming_recover_for_every_command(
    tmp_path: Path, sim: FleetITSimulator, keep_header: bool
) -> None:
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    _damage(database, keep_header=keep_header)
    for command in READ_COMMANDS:
        one_line(logd(*command, "-c", str(config)), str(database), ".recover")
    one_line(logd("sync", "-c", str(config)), str(database), ".recover")


def test_a_truncated_file_is_one_line(tmp_path: Path, sim: FleetITSimulator) -> None:
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    os.truncate(database, database.stat().st_size // 2)
    one_line(logd("query", "-n", "0", "-c", str(config)), str(database), ".recover")


# -- permissions, read-only media, a directory in the way ---------------------------------


def test_an_immutable_database_file_is_one_line_and_stays_readable(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    # Root ignores file modes; the immutable attribute stops root too.
    done = _run("chattr", "+i", str(database))
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {done.stderr.decode()}")
    try:
        sim.add_records(5)
        line = one_line(logd("sync", "-c", str(config)), str(database), "read-only")
        assert "chattr -i" in line
        assert len(stored_ids(config)) == 250
    finally:
        _run("chattr", "-i", str(database))
    assert logd("sync", "-c", str(config)).exit_code == 0
    assert len(set(stored_ids(config))) == 255


def test_a_read_only_directory_is_one_line_for_writes_and_reads(
    tmp_path: Path, sim: FleetITSimulator, mount: Callable[..., Path]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = synced(tmp_path, sim, home / "logd.db")
    readonly = mount("--bind", "-o", "ro", str(home))
    if not os.statvfs(readonly).f_flag & os.ST_RDONLY:  # old mount(8): bind first, then ro
        remount = _run("mount", "-o", "remount,ro,bind", str(readonly))
        if remount.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount: {remount.stderr.decode()}")
    moved = write_config(
        tmp_path / "ro", [sim.demo_source("fleet")], database=str(readonly / "logd.db")
    )
    one_line(logd("sync", "-c", str(moved)), str(readonly / "logd.db"), "read-only file system")
    one_line(logd("query", "-c", str(moved)), str(readonly / "logd.db"), "read-only file system")
    assert len(stored_ids(config)) == 250  # the same file, where it is writable: intact


def test_a_directory_in_the_databases_place_is_one_line(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    aside = tmp_path / "aside.db"
    database.rename(aside)
    database.mkdir()
    for command in (["sync"], *READ_COMMANDS):
        one_line(logd(*command, "-c", str(config)), str(database), "is a directory")
    database.rmdir()
    aside.rename(database)
    assert len(stored_ids(config)) == 250


def test_the_suggested_recovery_gives_back_a_readable_store(
    tmp_path: Path, sim: FleetITSimulator
) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line shell is not installed")
    healthy = tmp_path / "healthy.db"
    sqlite3.connect(healthy).execute("CREATE TABLE t (x)").connection.close()
    probe = subprocess.run(["sqlite3", str(healthy), ".recover"], capture_output=True, timeout=30)
    if probe.returncode != 0 or b"error" in probe.stderr + probe.stdout:
        # Debian's 3.40.1 shell fails `.recover` on any file ("SQL logic error").
        pytest.skip(f"this sqlite3 shell cannot .recover even a healthy file: {probe.stderr!r}")
    database = tmp_path / "logd.db"
    config = synced(tmp_path, sim, database)
    middle = database.stat().st_size // 2 // 8192 * 8192
    _damage(database, keep_header=True, pages=2, start=middle)
    line = one_line(logd("query", "-n", "0", "-c", str(config)), ".recover")
    command = line.split("recover what it holds: ", 1)[1].split(", then", 1)[0]
    done = subprocess.run(command, shell=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    recovered = Path(f"{database}.recovered")
    result = logd("query", "-n", "0", "--db", str(recovered), "-f", "ndjson")
    assert result.exit_code == 0, result.output
    assert 0 < len(result.stdout.splitlines()) <= 250


# -- the daemon -------------------------------------------------------------------------------


def test_the_daemon_fails_a_poll_on_a_locked_store_and_retries_it(
    tmp_path: Path, sim: FleetITSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import time

    from logd.daemon.service import Daemon

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    config = write_config(tmp_path, [{**sim.demo_source("fleet"), "interval": 1}])
    saved = {n: logging.getLogger(n).handlers[:] for n in ("logd", "apscheduler")}
    daemon = Daemon(config)

    def wait_for(cond: Callable[[], object], what: str) -> None:
        end = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            time.sleep(0.05)

    daemon.start()
    other = sqlite3.connect(daemon.store.path, isolation_level=None, check_same_thread=False)
    try:
        wait_for(lambda: daemon._last_report is not None and daemon._last_report.ok, "a poll")
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        sim.add_records(5)
        wait_for(lambda: daemon._failures.get("fleet", 0) >= 1, "a failed poll")
        report = daemon._last_report
        assert report is not None and report.error is not None
        assert "is locked" in report.error and "internal error" not in report.error
        other.execute("ROLLBACK")
        wait_for(lambda: daemon._failures.get("fleet") == 0, "the next poll to succeed")
        assert daemon.scheduler.running
    finally:
        other.close()
        daemon.shutdown()
        for name, handlers in saved.items():
            logging.getLogger(name).handlers[:] = handlers
    assert len(set(stored_ids(config))) == 255  # the failed poll's records came with the next


def test_two_connections_writing_one_file_wait_their_turn(tmp_path: Path) -> None:
    """A write transaction takes the lock when it begins: a deferred one that read first got
    SQLITE_BUSY at once (no busy wait) when another connection committed meanwhile."""
    import threading

    from logd.store.sqlite.store import Store

    path = tmp_path / "logd.db"
    with Store(path) as a, Store(path) as b:
        other_done = threading.Event()

        def other_writer() -> None:
            b.set_schedule("daemon-b", "pegasus", None, 60.0, 0)
            other_done.set()

        with a.transaction() as db:
            db.execute("SELECT count(*) FROM entries").fetchone()
            thread = threading.Thread(target=other_writer)
            thread.start()
            # The other writer waits for this transaction instead of slipping in between.
            assert not other_done.wait(0.3)
            db.execute(
                "INSERT INTO daemon_schedule (daemon, source, next_run, interval, "
                "consecutive_failures, updated_at) VALUES ('daemon-a', 'fleet', NULL, 60, 0, '')"
            )
        thread.join(10)
        assert other_done.is_set()
        assert set(a.schedule()) == {"fleet", "pegasus"}
