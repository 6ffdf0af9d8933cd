"""A throwaway PostgreSQL cluster in a temporary directory, on a Unix socket only.

For tests and benchmarks: `initdb` into a fresh directory, `postgres` listening on a socket in
that directory (no TCP port, so parallel test workers never clash), torn down on exit.

The server binaries come from, in order: `$LOGD_PG_BINDIR`, the `pgserver` wheel (which
bundles a PostgreSQL build, so a fresh machine gets one from `pip`), the distribution's
`pg_config --bindir`, `/usr/lib/postgresql/*/bin`, or `initdb` on PATH. The first set that
brings a cluster up is used. PostgreSQL refuses to run as root; as root the cluster runs as
the `postgres` system user when there is one, else as `nobody`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Seconds `initdb` and the server's start may take before the cluster is given up on.
START_TIMEOUT = 60.0
#: Roles the cluster has: the superuser (trusted on the socket) and one that must give this
#: password, so tests can see what a refused login looks like.
SUPERUSER = "postgres"
PASSWORD_ROLE = "logd_password"
PASSWORD = "pg-test-secret-4f1b"


class ClusterUnavailable(Exception):
    """No PostgreSQL server binaries here could bring a cluster up; the message says why."""


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: its socket directory and the URL of a database in it."""

    socket_dir: Path
    bindir: Path

    def url(self, database: str = "postgres", *, user: str = SUPERUSER) -> str:
        """`postgresql://` URL of `database` on this cluster's socket."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}"


def candidate_bindirs() -> list[Path]:
    """Directories that may hold `initdb` and `postgres`, most preferred first."""
    found: list[Path] = []
    if env := os.environ.get("LOGD_PG_BINDIR"):
        found.append(Path(env))
    spec = importlib.util.find_spec("pgserver")  # located, not imported: it starts nothing
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            found.append(Path(location) / "pginstall" / "bin")
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            found.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found.extend(versions)
    if initdb := shutil.which("initdb"):
        found.append(Path(os.path.realpath(initdb)).parent)
    usable = []
    for path in dict.fromkeys(found):
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            usable.append(path)
    return usable


def _reachable(bindir: Path) -> Path:
    """`bindir`, or a copy of its installation that any user can run.

    The server runs as another user than root, who may not enter the directories holding
    the binaries (a checkout under /root, pytest's temporary directories): the installation
    (`bin`, `lib`, `share` beside it, as the pgserver wheel has them) is then copied once to
    the temporary directory and shared by every later cluster.
    """
    if all(p.stat().st_mode & stat.S_IXOTH for p in (bindir, *bindir.parents)):
        return bindir
    install = bindir.parent
    # The wheel's binaries find their libraries at $ORIGIN/../../../pgserver.libs: the copy
    # keeps `pgserver/pginstall` and `pgserver.libs` side by side as in site-packages.
    wheel = install.name == "pginstall" and install.parent.name == "pgserver"
    inside = Path("pgserver", "pginstall") if wheel else Path()
    key = hashlib.blake2b(str(install).encode(), digest_size=6).hexdigest()
    target = Path(tempfile.gettempdir()) / f"logd-pg-install-{key}"
    if not (target / inside / "bin" / "postgres").is_file():
        staging = Path(tempfile.mkdtemp(prefix="logd-pg-install-", dir=target.parent))
        try:
            for part in ("bin", "lib", "share"):
                if (install / part).is_dir():
                    shutil.copytree(install / part, staging / inside / part, symlinks=True)
            libs = install.parent.parent / "pgserver.libs"
            if wheel and libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            staging.chmod(0o755)
            staging.rename(target)  # atomic: a parallel worker's copy is either whole or absent
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another worker's copy won
    return target / inside / bindir.name


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ClusterUnavailable("running as root and there is no `postgres` or `nobody` user")


@contextlib.contextmanager
def temporary_cluster() -> Iterator[Cluster]:
    """Start a throwaway cluster; stop it and delete its directory on exit.

    Raises ClusterUnavailable (saying what each candidate did) when none can be started.
    """
    bindirs = candidate_bindirs()
    if not bindirs:
        raise ClusterUnavailable(
            "no PostgreSQL server binaries found: install the `pgserver` wheel (the dev extra "
            "has it), the distribution's postgresql package, or set LOGD_PG_BINDIR"
        )
    problems = []
    for bindir in bindirs:
        try:
            with _cluster(bindir) as cluster:
                yield cluster
            return
        except _StartFailed as exc:
            problems.append(f"{bindir}: {exc}")
    raise ClusterUnavailable("no cluster could be started: " + "; ".join(problems))


class _StartFailed(Exception):
    """This set of binaries did not bring a cluster up."""


@contextlib.contextmanager
def _cluster(bindir: Path) -> Iterator[Cluster]:
    user = _run_as()
    # A short path: a Unix socket's path is limited to ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="logd-pg-"))
    data = root / "data"
    as_user: dict[str, object] = {}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    server: subprocess.Popen[bytes] | None = None
    try:
        if user is not None:
            bindir = _reachable(bindir)
        try:
            init = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                timeout=START_TIMEOUT,
                cwd=root,
                **as_user,  # type: ignore[call-overload]
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise _StartFailed(f"initdb did not run: {exc}") from exc
        if init.returncode != 0:
            tail = init.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise _StartFailed(f"initdb failed: {' '.join(tail)}")
        # The superuser is trusted on the socket; every other role must give its password.
        (data / "pg_hba.conf").write_text(
            f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n"
        )
        log = open(root / "server.log", "wb")  # noqa: SIM115 - the server writes it until stopped
        server = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-k",
                str(root),
                "-c",
                "listen_addresses=",
                # A throwaway cluster: nothing must survive a crash, so nothing waits on disk.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=60",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,  # Ctrl-C in a terminal reaches pytest, which stops it
            **as_user,  # type: ignore[call-overload]
        )
        log.close()
        cluster = Cluster(root, bindir)
        _wait_ready(cluster, server, root / "server.log")
        _setup_roles(cluster)
        yield cluster
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(cluster: Cluster, server: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server takes connections on its socket, or raise _StartFailed."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-2:]
            raise _StartFailed(f"postgres exited with {server.returncode}: {' '.join(tail)}")
        try:
            with psycopg.connect(cluster.url(), connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                _stop(server)
                raise _StartFailed(f"postgres did not take connections: {exc}") from exc
        time.sleep(0.05)


def _setup_roles(cluster: Cluster) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(PASSWORD_ROLE), sql.Literal(PASSWORD)
            )
        )


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: roll back sessions, stop), then SIGKILL if it hangs."""
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


_shared: list[Cluster] = []
_shared_failure: list[ClusterUnavailable] = []


def shared_cluster() -> Cluster:
    """One throwaway cluster for this whole process, started on first use and stopped when
    the process exits (every test of a pytest worker shares it). Raises ClusterUnavailable,
    every time, when none could be started."""
    if _shared:
        return _shared[0]
    if _shared_failure:
        raise _shared_failure[0]
    running = temporary_cluster()
    try:
        cluster = running.__enter__()
    except ClusterUnavailable as exc:
        _shared_failure.append(exc)
        raise
    atexit.register(running.__exit__, None, None, None)
    _shared.append(cluster)
    return cluster


def new_database(cluster: Cluster, prefix: str = "logd_db") -> str:
    """The URL of a new, empty database on `cluster` (a name no other call in any process
    gets)."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{next(_names)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url(name)


_names = itertools.count(1)


def cluster_for_tests() -> Cluster:
    """`shared_cluster()` for a test: where none can be started the test is skipped with the
    reason, or fails when LOGD_REQUIRE_POSTGRES=1 (as CI sets it)."""
    import pytest

    try:
        return shared_cluster()
    except ClusterUnavailable as exc:
        if os.environ.get("LOGD_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"LOGD_REQUIRE_POSTGRES=1 but no PostgreSQL server: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
