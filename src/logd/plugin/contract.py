"""The provider contract: what every provider does against its simulator, engine and store real.

Every installed plugin that registers a simulator gets these checks (`tests/
test_provider_contract.py` runs them all; a new plugin gets them by registering one)::

    @pytest.mark.parametrize(("provider", "check"), contract_cases())
    def test_contract(provider: str, check: str, tmp_path: Path) -> None:
        run_check(check, provider, tmp_path)

- `backfill`: a first poll stores everything the simulator holds (`Simulator.native_ids()`),
  each record once; a second poll stores nothing new, updates nothing and, with a login
  session, does not log in again (the session is kept on the provider instance).
- `crash_resume`: a commit that fails after batch k (for every k of a clean backfill) loses
  nothing: the next poll, by a new engine, ends with every record stored once, so no cursor
  was ever committed ahead of its data.
- `bad_credentials`: wrong values in `Simulator.credential_keys()` give one line, an
  `AuthError` or HTTP status error (not an internal error), no traceback, nothing stored.
- `relogin`: providers whose simulator names a `login_path` answer a 401 mid-poll with one
  fresh login and carry on, and a 401 right after that login is one clear line; others are
  not applicable.
- `stop`: the engine's stop event, set while batch 1 commits, ends the poll after that batch;
  the next poll finishes the rest.
- `secrets_masked`: no configured credential appears in a report error or in any log record
  (debug level, through logd's own `SecretFilter`) of a bad-credential poll or a re-login.

The simulator is made by `Simulator.for_contract()` (a data set of a few pages). A simulator
that does not declare `native_ids()` is held to what a clean poll stores (completeness is then
unchecked), and without `credential_keys()` every `Secret` in the source's options is one.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from logd.engine.poller import SourceReport
from logd.plugin.manager import load_plugins
from logd.plugin.simulator import Simulator
from logd.plugin.testing import SyncRun
from logd.redact import SecretFilter
from logd.store.interface import BatchResult, BatchTransaction

SOURCE = "contract"
#: Fast retries: the suite's faults are single answers, never worth a long wait.
RETRY = {"attempts": 2, "max_wait": "0.1s"}
CHECKS = ("backfill", "crash_resume", "bad_credentials", "relogin", "stop", "secrets_masked")


class NotApplicable(Exception):
    """The check does not apply to this provider (the message says why)."""


class CommitFailed(RuntimeError):
    """Raised by the suite's batch hook to fail a commit, as a crash would."""


def simulators() -> dict[str, type[Simulator]]:
    """Provider name → its registered simulator class, for every installed plugin."""
    return dict(sorted(load_plugins().simulators.items()))


def contract_cases() -> list[tuple[str, str]]:
    """`(provider, check)` for every provider with a simulator and every check."""
    return [(provider, check) for provider in simulators() for check in CHECKS]


def run_check(
    check: str,
    provider: str,
    directory: Path,
    *,
    database: Callable[[Path], str] | None = None,
) -> None:
    """Run one check; AssertionError when the provider breaks it, NotApplicable to skip.

    `database(directory)` gives the store of each run the check makes (one per directory:
    a resumed run finds the crashed one's store), e.g. a fresh PostgreSQL database each;
    default: an SQLite file in the directory.
    """
    if check not in CHECKS:
        raise ValueError(f"unknown contract check {check!r}; one of {', '.join(CHECKS)}")
    sim_cls = simulators()[provider]
    made: dict[Path, str] = {}

    def store_for(where: Path) -> str | None:
        if database is None:
            return None
        if where not in made:
            made[where] = database(where)
        return made[where]

    token = _database_for.set(store_for)
    try:
        with sim_cls.for_contract() as sim:
            _CHECK_FUNCTIONS[check](sim, directory)
    finally:
        _database_for.reset(token)


# -- helpers ------------------------------------------------------------------------------


class _Batches:
    """A batch hook that counts commits, runs `at_batch` on the k-th one, and can fail it."""

    def __init__(self, at: int | None = None, action: Callable[[], None] | None = None) -> None:
        self.count = 0
        self.new = 0
        self.at = at
        self.action = action

    def __call__(self, tx: BatchTransaction, result: BatchResult) -> None:
        self.count += 1
        if self.count == self.at and self.action is not None:
            self.action()
        self.new += result.new


def _crash() -> None:
    raise CommitFailed("simulated crash while committing")


def _source(sim: Simulator, **keys: Any) -> dict[str, Any]:
    return {**sim.contract_source(SOURCE), "retry": dict(RETRY), **keys}


#: The store of a check's run in a directory (`run_check(database=)`); None: SQLite there.
_database_for: ContextVar[Callable[[Path], str | None]] = ContextVar(
    "contract_database", default=lambda where: None
)


def _run(directory: Path, sim: Simulator, hooks: list[Any] | None = None, **keys: Any) -> SyncRun:
    now = sim.contract_now()
    database = _database_for.get()(directory)
    top: dict[str, Any] = {} if database is None else {"database": database}
    return SyncRun(
        directory,
        [_source(sim, **keys)],
        batch_hooks=hooks or [],
        now=None if now is None else (lambda: now),
        **top,
    )


def _sync(run: SyncRun, stop: threading.Event | None = None) -> SourceReport:
    return run.sync(stop=stop)[SOURCE]


def _stored(run: SyncRun) -> list[str]:
    return [row.native_id for row in run.rows()]


def _expected(sim: Simulator) -> set[str]:
    ids = sim.native_ids()
    if ids is None:
        ids = _reference_ids(sim)
    return ids


def _reference_ids(sim: Simulator) -> set[str]:
    """What a clean poll stores, for a simulator that does not declare `native_ids()`."""
    cached: set[str] | None = getattr(sim, "_contract_reference", None)
    if cached is None:
        with tempfile.TemporaryDirectory() as scratch:
            run = _run(Path(scratch), sim)
            report = _sync(run)
            assert report.ok, f"a clean backfill failed: {report.error}"
            cached = set(_stored(run))
            run.close()
        sim._contract_reference = cached  # type: ignore[attr-defined]
    return cached


def _all_once(run: SyncRun, sim: Simulator, when: str) -> None:
    stored = _stored(run)
    expected = _expected(sim)
    assert len(stored) == len(set(stored)), f"{when}: a record was stored twice"
    missing, extra = expected - set(stored), set(stored) - expected
    assert not missing, f"{when}: {len(missing)} records never stored, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{when}: {len(extra)} records the simulator never held: {sorted(extra)[:3]}"


def _one_line(report: SourceReport) -> str:
    error = report.error
    assert error is not None, "the poll succeeded"
    assert "\n" not in error, f"not one line: {error!r}"
    assert "Traceback" not in error
    assert not error.startswith("internal error"), f"a provider bug, not a clear error: {error}"
    return error


def _credentials(sim: Simulator) -> dict[str, str]:
    """Dotted key → configured value of each credential of the contract source.

    `Simulator.credential_keys()` when declared, else every `Secret` in the validated options
    (nested tables included, such as `auth.bearer.token`).
    """
    table = sim.contract_source(SOURCE)
    keys = list(sim.credential_keys())
    if not keys:
        with tempfile.TemporaryDirectory() as scratch:
            run = _run(Path(scratch), sim)
            keys = list(_secret_paths(run.settings.source(SOURCE).options))
            run.close()
    assert keys, f"{type(sim).__name__}'s source has no credential (no Secret option)"
    return {key: str(_get(table, key)) for key in keys}


def _secret_paths(model: BaseModel, prefix: str = "") -> Iterator[str]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield f"{prefix}{name}"
        elif isinstance(value, BaseModel):
            yield from _secret_paths(value, f"{prefix}{name}.")


def _get(table: Any, key: str) -> Any:
    for part in key.split(".") if key else ():
        table = table[part]
    return table


def _wrong(sim: Simulator) -> dict[str, Any]:
    """Top-level source keys with every credential made wrong (`wrong-<value>`)."""
    table = copy.deepcopy(sim.contract_source(SOURCE))
    credentials = _credentials(sim)
    for key, value in credentials.items():
        parent, _, last = key.rpartition(".")
        _get(table, parent)[last] = f"wrong-{value}"
    return {top: table[top] for top in {key.split(".")[0] for key in credentials}}


@contextmanager
def _captured() -> Iterator[list[str]]:
    """Every log line (debug and up) as logd's handlers would write it, masked the same way."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = _Collect(logging.DEBUG)
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# -- checks -------------------------------------------------------------------------------


def check_backfill(sim: Simulator, directory: Path) -> None:
    """Everything once, then a second poll stores nothing new and updates nothing."""
    run = _run(directory, sim)
    first = _sync(run)
    assert first.ok, first.error
    _all_once(run, sim, "backfill")
    assert first.new == len(_expected(sim))
    logins = len(sim.requests_to(sim.login_path)) if sim.login_path else 0
    second = _sync(run)
    assert second.ok, second.error
    assert (second.new, second.updated) == (0, 0), "the resync changed stored records"
    if sim.login_path:
        again = len(sim.requests_to(sim.login_path))
        assert again == logins, "the login session was not kept between polls"
    _all_once(run, sim, "resync")
    run.close()


def check_crash_resume(sim: Simulator, directory: Path) -> None:
    """A failed commit at every batch of a backfill: the next poll completes it exactly."""
    count = _Batches()
    clean = _run(directory / "clean", sim, [count])
    assert _sync(clean).ok
    clean.close()
    assert count.count >= 2, "the backfill is one batch: the simulator's set is too small"
    for k in range(1, count.count + 1):
        where = directory / f"crash-{k}"
        crashed = _run(where, sim, [_Batches(at=k, action=_crash)])
        report = _sync(crashed)
        assert not report.ok, f"batch {k}: a failed commit was not reported"
        crashed.close()
        resumed = _run(where, sim)
        again = _sync(resumed)
        assert again.ok, f"resume after batch {k}: {again.error}"
        _all_once(resumed, sim, f"resume after a crash at batch {k}")
        resumed.close()


def check_bad_credentials(sim: Simulator, directory: Path) -> None:
    """Wrong credentials: one clear line, nothing stored."""
    run = _run(directory, sim, **_wrong(sim))
    report = _sync(run)
    error = _one_line(report)
    assert "HTTP 4" in error or "refused" in error.lower(), f"does not say it was refused: {error}"
    assert run.count() == 0
    run.close()


def check_relogin(sim: Simulator, directory: Path) -> None:
    """A 401 mid-poll on a login session: exactly one more login, and the poll carries on."""
    login = sim.login_path
    if login is None:
        raise NotApplicable(f"{type(sim).__name__} has no login session (static credentials)")
    # The second request of the poll finds the session ended (the login itself is spared).
    sim.fail_next(401, skip=1, spare=login)
    run = _run(directory, sim)
    report = _sync(run)
    assert report.ok, report.error
    assert len(sim.requests_to(login)) == 2, "not exactly one fresh login after the 401"
    _all_once(run, sim, "after a re-login")
    run.close()
    # A 401 that outlasts the fresh login is a clear error, not a loop of logins.
    sim.fail_next(401, times=2, spare=login)
    again = _run(directory / "again", sim)
    error = _one_line(_sync(again))
    assert "HTTP 401" in error, error
    assert len(sim.requests_to(login)) == 4, "not one login and one re-login"
    again.close()


def check_stop(sim: Simulator, directory: Path) -> None:
    """The stop event set during batch 1: the poll ends after it; the next one finishes."""
    stop = threading.Event()
    hook = _Batches(at=1, action=stop.set)
    run = _run(directory, sim, [hook])
    report = _sync(run, stop)
    assert report.error is None, report.error
    assert hook.count == 1, f"the poll went on for {hook.count - 1} batches after the stop"
    assert run.count() == hook.new
    report = _sync(run)
    assert report.ok, report.error
    _all_once(run, sim, "the poll after a stop")
    run.close()


def check_secrets_masked(sim: Simulator, directory: Path) -> None:
    """No configured credential in a report error or a log line, on failure or re-login."""
    configured = list(_credentials(sim).values())
    secrets = [*configured, *(f"wrong-{value}" for value in configured)]
    wrong = _wrong(sim)
    errors: list[str] = []
    with _captured() as lines:
        bad = _run(directory / "bad", sim, **wrong)
        errors.append(_sync(bad).error or "")
        bad.close()
        if sim.login_path is not None:
            sim.fail_next(401, skip=1, spare=sim.login_path)
        good = _run(directory / "good", sim)
        errors.append(_sync(good).error or "")
        good.close()
    assert lines, "nothing was logged at debug level"
    for secret in secrets:
        for text in [*errors, *lines]:
            assert secret not in text, f"a credential leaked into: {text[:200]}"


_CHECK_FUNCTIONS: dict[str, Callable[[Simulator, Path], None]] = {
    "backfill": check_backfill,
    "crash_resume": check_crash_resume,
    "bad_credentials": check_bad_credentials,
    "relogin": check_relogin,
    "stop": check_stop,
    "secrets_masked": check_secrets_masked,
}
