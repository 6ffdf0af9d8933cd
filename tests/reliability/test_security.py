"""Secrets stay secret, files stay private, credentials stay home, query text stays data.

- Known secret values for every provider (and the session tokens the simulators issue, and
  Maestra's signed part URLs) never appear in stdout, stderr or the database file of
  `logd --log-level debug sync`, `status`, `query --format json`, `webhooks list`.
- With umask 022 the database, its -wal and -shm and every other file logd creates beside
  it are 0600.
- Credentials only to their origin: a redirect of a data request or a login to another port
  or another host (127.0.0.2), a `next` link to another port, Maestra's file host: the other
  server sees no Authorization, Authentication, Authenticate, Cookie or Fleet-Id header and
  no secret in a body.
- Query input is data: injection attempts through `--source`, `--provider`, plain text and
  `--fts` return no rows, or one line and exit 2; the store is unchanged afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logd.delivery.receiver import Receiver
from logd.plugin.simulator import SimRequest, SimResponse, Simulator
from logd.plugin.testing import SyncRun, write_config

DEADLINE = 120.0
CREDENTIAL_HEADERS = ("authorization", "authentication", "authenticate", "cookie", "fleet-id")

SECRETS = {
    "fleetit": {"token": "fleet-secret-token-4711"},
    "akinon": {"password": "akinon-secret-password-4711"},
    "elasticpath": {"client_secret": "ep-secret-client-4711"},
    "pegasus": {"password": "pegasus-secret-password-4711"},
    "maestra": {"secret_key": "maestra-secret-key-4711"},
}
WEBHOOK_SECRET = "webhook-hmac-secret-4711"
HEADER_SECRET = "webhook-header-secret-4711"
WRONG_SECRET = "wrong-secret-value-4711"


def make_sims(profiles: dict[str, Any]) -> dict[str, Simulator]:
    """The five simulators, each holding its secret instead of the demo value."""
    from logd_akinon import AkinonSimulator
    from logd_elasticpath import ElasticPathSimulator
    from logd_fleetit import FleetITSimulator
    from logd_maestra import MaestraSimulator
    from logd_pegasus import PegasusSimulator

    return {
        "fleetit": FleetITSimulator(records=150, token=SECRETS["fleetit"]["token"]),
        "akinon": AkinonSimulator(
            flows=("flow-orders",),
            records=60,
            sub_logs=5,
            password=SECRETS["akinon"]["password"],
        ),
        "elasticpath": ElasticPathSimulator(
            integrations=(60, 20), client_secret=SECRETS["elasticpath"]["client_secret"]
        ),
        "pegasus": PegasusSimulator(records=120, password=SECRETS["pegasus"]["password"]),
        "maestra": MaestraSimulator(
            records=120, ready_after=1, secret_key=SECRETS["maestra"]["secret_key"]
        ),
    }


@pytest.fixture
def sims(profiles: dict[str, Any]) -> Iterator[dict[str, Simulator]]:
    started = make_sims(profiles)
    for sim in started.values():
        sim.start()
    yield started
    for sim in started.values():
        sim.stop()


def issued_secrets(sims: dict[str, Simulator]) -> set[str]:
    """Session tokens and part signatures the simulators handed out."""
    found: set[str] = set()
    akinon: Any = sims["akinon"]
    found |= set(akinon.tokens)
    elastic: Any = sims["elasticpath"]
    found |= set(elastic.tokens)
    pegasus: Any = sims["pegasus"]
    found |= set(pegasus.sessions)
    maestra: Any = sims["maestra"]
    found |= {part.signature for part in maestra.files.parts.values()}
    return {s for s in found if s}


def logd(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logd", *args],
        capture_output=True,
        timeout=DEADLINE,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def secret_leaks(
    tmp_path: Path,
    profiles: dict[str, Any],
    sims: dict[str, Simulator],
    echo: bool,
    signatures: bool = False,
) -> list[str]:
    """Run every command at debug level; where each known secret showed up."""
    sources = [{**profiles[name].source(sim, name), **SECRETS[name]} for name, sim in sims.items()]
    # A source whose secret is refused: the vendor's error text goes into logs and status.
    refused = profiles["fleetit"].source(sims["fleetit"], "refused")
    sources.append({**refused, "token": WRONG_SECRET})
    # An echoing receiver answers 400 with the request's headers, the webhook's secret among them.
    answers: list[Any] = (
        [(400, {}, f"bad request; headers: X-Api-Key: {HEADER_SECRET}")] if echo else []
    )
    with Receiver(WEBHOOK_SECRET, responses=[*answers, 200]) as rx:
        webhook = {
            "name": "alerts",
            "url": rx.url,
            "secret": WEBHOOK_SECRET,
            "headers": {"X-Api-Key": HEADER_SECRET},
            "max_entries": 1000,
            "alert_backfill": True,
        }
        config = str(write_config(tmp_path, sources, webhooks=[webhook]))
        outputs = [
            logd("--log-level", "debug", "sync", "-c", config),
            logd("--log-level", "debug", "sync", "-c", config),  # sessions reused, webhook retried
            logd("--log-level", "debug", "status", "-c", config),
            logd("status", "-c", config, "--format", "json"),
            logd("query", "-c", config, "--format", "json", "-n", "0"),
            logd("--log-level", "debug", "webhooks", "list", "-c", config),
            logd("check-config", "-c", config),
        ]
        assert rx.received, "the webhook was never called"
    issued = issued_secrets(sims)
    assert len(issued) >= 4, "the simulators issued no session tokens"
    assert b"Invalid token." in outputs[0].stdout + outputs[0].stderr
    secrets = {v for table in SECRETS.values() for v in table.values()}
    secrets |= {WEBHOOK_SECRET, HEADER_SECRET, WRONG_SECRET} | issued
    maestra: Any = sims["maestra"]
    signed = {part.signature for part in maestra.files.parts.values()}
    # A signed part URL is a bearer credential too; its own test below.
    secrets = signed if signatures else secrets - signed
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("logd.db")}
    leaks = []
    for secret in sorted(secrets):
        for i, out in enumerate(outputs):
            for stream, data in (("stdout", out.stdout), ("stderr", out.stderr)):
                if secret.encode() in data:
                    leaks.append(f"{secret!r} in {stream} of command {i}")
        leaks += [
            f"{secret!r} in {name}" for name, data in files.items() if secret.encode() in data
        ]
    return leaks


def test_secrets_appear_in_no_output_and_not_in_the_database(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    assert not secret_leaks(tmp_path, profiles, sims, echo=False)


def test_maestra_part_signatures_appear_in_no_output(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    assert not secret_leaks(tmp_path, profiles, sims, echo=False, signatures=True)


def test_a_receiver_echoing_the_webhook_header_secret_leaks_it_nowhere(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    assert not secret_leaks(tmp_path, profiles, sims, echo=True)


def test_database_and_its_companions_are_0600_under_umask_022(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    sources = [profiles[name].source(sim, name) for name, sim in sims.items()]
    config = write_config(tmp_path, sources, database=str(state / "logd.db"))
    # A reader while the writer holds the WAL open, then a second writer: -wal and -shm exist.
    assert logd("sync", "-q", "-c", str(config), umask=0o022).returncode == 0
    run = SyncRun(tmp_path / "reader", sources[:1], database=str(state / "logd.db"))
    assert logd("query", "-c", str(config), "-n", "1", umask=0o022).returncode == 0
    assert logd("status", "-c", str(config), umask=0o022).returncode == 0
    created = sorted(state.iterdir())
    names = {p.name for p in created}
    assert {"logd.db", "logd.db-wal", "logd.db-shm"} <= names, names
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in created}
    run.close()
    assert all(mode == "0o600" for mode in modes.values()), modes


class Spy(Simulator):
    """Another origin: records what reaches it and answers 404."""

    provider = "spy"

    def handle(self, request: SimRequest) -> SimResponse:
        return SimResponse.json({"detail": "Not found."}, 404)

    def leaks(self, secrets: set[str]) -> list[str]:
        """Credential headers and secret values that reached this origin."""
        found = []
        for request in self.requests:
            for name in CREDENTIAL_HEADERS:
                if request.header(name) is not None:
                    found.append(f"{request.method} {request.path}: {name} header")
            blob = request.body + str(request.query).encode()
            found += [f"{request.path}: {s} in the request" for s in secrets if s.encode() in blob]
        return found


LOGINS = {
    "akinon": "/api/nifi/login",
    "elasticpath": "/oauth/access_token",
    "pegasus": "/api/login",
}


def redirect_cases() -> list[Any]:
    cases = []
    for provider in SECRETS:
        # 301 follows 302's path in the client; another host once, for the 307 that keeps
        # method and body.
        for status, host in (
            (302, "127.0.0.1"),
            (303, "127.0.0.1"),
            (307, "127.0.0.1"),
            (308, "127.0.0.1"),
            (307, "127.0.0.2"),
        ):
            cases.append(
                pytest.param(provider, "data", status, host, id=f"{provider}-data-{status}-{host}")
            )
        if provider in LOGINS:
            for status in (302, 307, 308):
                cases.append(
                    pytest.param(
                        provider, "login", status, "127.0.0.1", id=f"{provider}-login-{status}"
                    )
                )
    return cases


@pytest.mark.parametrize(("provider", "what", "status", "host"), redirect_cases())
def test_a_redirect_to_another_origin_carries_no_credential(
    tmp_path: Path,
    profiles: dict[str, Any],
    provider: str,
    what: str,
    status: int,
    host: str,
) -> None:
    sims = make_sims(profiles)
    sim = sims[provider]
    sim.start()
    profile = profiles[provider]
    spy = Spy()
    spy.start(host=host)
    try:
        path = LOGINS[provider] if what == "login" else profile.data_path
        # The vendor sends every request on `path` elsewhere, with its own path and query.
        sim.fail_next(
            status,
            body=b"",
            headers={"Location": f"{spy.base_url}{path}?moved=1"},
            times=10,
            path=path,
        )
        run = SyncRun(tmp_path, [{**profile.source(sim), **SECRETS[provider]}])
        report = run.sync()[provider]
        run.close()
        secrets = set(SECRETS[provider].values()) | issued_secrets(sims)
        assert not spy.leaks(secrets)
        # Followed without credentials, or refused (a body that is a credential stays home).
        assert spy.requests or report.error, "neither followed nor refused"
    finally:
        spy.stop()
        sim.stop()


@pytest.mark.parametrize("provider", ["fleetit", "akinon"])
def test_a_next_link_to_another_port_carries_no_credential(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator], provider: str
) -> None:
    sim: Any = sims[provider]
    spy = Spy()
    spy.start()
    try:
        sim.next_base = spy.base_url
        run = SyncRun(tmp_path, [{**profiles[provider].source(sim), **SECRETS[provider]}])
        run.sync()
        run.close()
        assert not spy.leaks(set(SECRETS[provider].values()) | issued_secrets(sims))
    finally:
        spy.stop()


def test_maestra_part_urls_on_another_port_get_no_credential(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    sim: Any = sims["maestra"]
    run = SyncRun(tmp_path, [{**profiles["maestra"].source(sim), **SECRETS["maestra"]}])
    assert run.sync()["maestra"].ok
    run.close()
    parts = sim.files.requests
    assert parts
    leaked = [r.path for r in parts for h in CREDENTIAL_HEADERS if r.header(h) is not None]
    assert not leaked and not sim.files.auth_seen


def test_a_cookie_from_the_api_is_not_sent_to_another_port(
    tmp_path: Path, profiles: dict[str, Any], sims: dict[str, Simulator]
) -> None:
    sim = sims["fleetit"]
    spy = Spy()
    spy.start()
    try:
        sim.fail_next(
            307,
            body=b"",
            headers={
                "Set-Cookie": "sessionid=cookie-secret-4711; Path=/",
                "Location": f"{spy.base_url}/v2/integrations/logs/",
            },
            path="/v2/integrations/logs",
        )
        run = SyncRun(tmp_path, [{**profiles["fleetit"].source(sim), **SECRETS["fleetit"]}])
        run.sync()
        run.close()
        assert spy.requests
        assert not spy.leaks({"cookie-secret-4711"})
    finally:
        spy.stop()


INJECTIONS: list[Any] = [
    ("--source", "x' OR 1=1 --"),
    ("--source", 'x" OR 1=1 --'),
    ("--source", "x'); DROP TABLE entries; --"),
    ("--provider", "x' OR '1'='1"),
    ("text", "x' OR 1=1 --"),
    ("text", "'); DROP TABLE entries; --"),
    ("text", '" OR "" = "'),
    ("fts", "zzqx' OR 1=1 --"),
    ("fts", 'zzqx") OR 1=1 --'),
    ("fts", "zzqx'; DROP TABLE entries; --"),
    ("fts", "zzqx) UNION SELECT * FROM entries --"),
    ("--since", "1d' OR 1=1 --"),
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from logd_fleetit import FleetITSimulator

    directory = tmp_path_factory.mktemp("injection")
    with FleetITSimulator(records=120) as sim:
        run = SyncRun(directory, [sim.demo_source("fleet")])
        assert run.sync()["fleet"].ok
        run.close()
    yield directory / "logd.db"


def fingerprint(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("entries", "cursors", "poll_runs")
        )
    finally:
        conn.close()


def injection_id(case: Any) -> str:
    where, value = case.values if hasattr(case, "values") else case
    return f"{where}:{value}"


@pytest.mark.parametrize(("where", "value"), INJECTIONS, ids=[injection_id(c) for c in INJECTIONS])
def test_query_input_never_runs_sql(stored: Path, where: str, value: str) -> None:
    before = fingerprint(stored)
    args = ["query", "--db", str(stored), "--format", "json", "-n", "0"]
    if where == "text":
        args += ["--", value]
    elif where == "fts":
        args += ["--fts", "--", value]
    else:
        args += [f"{where}={value}"]
    result = logd(*args)
    err = result.stderr.decode()
    if result.returncode == 0:
        assert result.stdout.strip() in (b"[]", b""), result.stdout[:300]
    else:
        assert result.returncode == 2, err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert fingerprint(stored) == before


@pytest.mark.parametrize("provider", list(SECRETS))
def test_a_secret_straddling_the_cut_of_an_error_text_shows_no_part(
    tmp_path: Path, profiles: dict[str, Any], provider: str
) -> None:
    sim = make_sims(profiles)[provider]
    sim.start()
    try:
        [secret] = SECRETS[provider].values()
        # The vendor echoes the credential in its error, starting just before the 300th char.
        body = json.dumps({"detail": "x" * (296 - len('{"detail": "')) + secret})
        sim.fail_next(403, body=body, times=10)
        report = SyncRun(tmp_path, [{**profiles[provider].source(sim), **SECRETS[provider]}])
        error = report.sync()[provider].error or ""
        report.close()
        # Only the vendor's part: logd's own words may hold the same letters (`Pegasus`).
        vendor = error.split("): ", 1)[-1]
        assert error and secret[:4] not in vendor, error[-80:]
    finally:
        sim.stop()
