"""Whatever a vendor sends, every provider's poll ends clearly, in bounded time, losing nothing.

Each fault is a switch of the base simulator (src/logd/simulator.py), so each runs against all
five providers. One scenario per (provider, fault):

1. a backfill with the fault after the first data request: it fails with one line naming the
   URL (or completes), within a bounded number of requests, and keeps what it committed;
2. the vendor recovers: the next poll completes, and holds what a clean backfill of the same
   simulator holds (the control);
3. new records, and the fault on the first data request of an incremental poll: nothing stored
   before is lost; the vendor recovers and the next poll again matches the control.

The hang guard (`run_bounded`) only keeps a broken build from hanging the suite: on overrun it
ends the fault and the test fails on the flag, never on a measured time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from logd.engine.poller import SourceReport
from logd.plugin.http import SourceClient
from logd.plugin.simulator import Simulator
from logd.plugin.testing import SyncRun, run_bounded

#: Far above what a bounded poll takes here (two attempts, 1 s timeouts): a hang guard.
GUARD = 3.0
#: Answers a fault spoils: more than one poll's attempts, fewer than a backfill's requests.
TIMES = 2


def needs(fix: str, case: int) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"needs {fix}: issue 16 case {case}")


Fault = Callable[[Simulator, str, int], None]

# name → how to inject it on `path`, letting `skip` matching requests through first.
FAULTS: dict[str, Fault] = {
    "truncated-json": lambda s, p, k: s.truncate_body(times=TIMES, path=p, skip=k),
    "html-error-page": lambda s, p, k: s.html_error_page(times=TIMES, path=p, skip=k),
    "reset-mid-body": lambda s, p, k: s.reset_mid_body(after=20, times=TIMES, path=p, skip=k),
    "429-storm-retry-after": lambda s, p, k: s.storm(429, retry_after="3600", path=p, skip=k),
    "429-storm-bare": lambda s, p, k: s.storm(429, path=p, skip=k),
    "5xx-run": lambda s, p, k: s.storm(503, path=p, skip=k),
    "oversized-body": lambda s, p, k: s.oversized_body(2 * 2**20, times=TIMES, path=p, skip=k),
    "wrong-encoding": lambda s, p, k: s.wrong_encoding("gzip", times=TIMES, path=p, skip=k),
    "wrong-encoding-502": lambda s, p, k: s.wrong_encoding(
        "gzip", status=502, times=TIMES, path=p, skip=k
    ),
    # A byte every 0.3 s never trips a 1 s read timeout: only a whole-request deadline ends it.
    "drip": lambda s, p, k: s.drip(after=10, interval=0.3, times=TIMES, path=p, skip=k),
    "non-advancing-pages": lambda s, p, k: s.repeat_answer(path=p, skip=k),
}

# (fault, providers it fails for today) → what is still missing; empty while every fault is
# handled (a repeated page stops any provider's poll in the engine's paging guard; an export
# that stays NotReady fails after `export_timeout`, fast in this suite's Maestra profile).
XFAIL: dict[tuple[str, tuple[str, ...]], pytest.MarkDecorator] = {}


def expect_failure(request: pytest.FixtureRequest, provider: str, fault: str) -> None:
    """Mark this test xfail(strict) when it waits for a fix (see XFAIL)."""
    for (name, providers), mark in XFAIL.items():
        if name == fault and provider in providers:
            request.applymarker(mark)


@pytest.fixture(autouse=True)
def small_response_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap is 64 MiB; 1 MiB keeps an oversized answer cheap to send and to refuse.
    defaults = dict(SourceClient.__init__.__kwdefaults__ or {})
    defaults["max_response_bytes"] = 2**20
    monkeypatch.setattr(SourceClient.__init__, "__kwdefaults__", defaults)


def native_ids(run: SyncRun) -> set[str]:
    return {r[0] for r in run.store.db.execute("SELECT native_id FROM entries").fetchall()}


class Control:
    """A clean run beside the faulted one: what the simulator holds, as logd reads it."""

    def __init__(self, tmp_path: Path, profile: Any, sim: Simulator) -> None:
        self.run = SyncRun(tmp_path / "control", [profile.source(sim)])
        self.name = profile.name

    def ids(self) -> set[str]:
        """Poll (the faults are cleared) and answer every native id stored."""
        report = self.run.sync()[self.name]
        assert report.ok, report.error
        return native_ids(self.run)


def assert_clear_answer(
    report: SourceReport, caplog: Any, where: tuple[str, ...] = ("127.0.0.1:",)
) -> None:
    """Failed or partial: one line naming the source and the URL; no internal error."""
    line = f"error: {report.source}: {report.error}"
    if report.error is not None:
        assert "\n" not in line, line
        assert "internal error" not in line, line
        assert any(w in line for w in where), f"no URL in: {line}"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()


def poll(run: SyncRun, sim: Simulator, name: str) -> tuple[SourceReport, bool, int]:
    """One guarded poll: its report, whether it overran the guard, and the requests it made."""
    before = len(sim.requests) + sum(len(c.requests) for c in sim.companions())
    reports, overran = run_bounded(run.sync, GUARD, unstick=sim.clear_faults)
    after = len(sim.requests) + sum(len(c.requests) for c in sim.companions())
    return reports[name], overran, after - before


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_fails_one_poll_clearly_and_the_next_completes(
    tmp_path: Path,
    profile: Any,
    sim: Simulator,
    fault: str,
    caplog: Any,
    request: pytest.FixtureRequest,
) -> None:
    expect_failure(request, profile.name, fault)
    inject = FAULTS[fault]
    scenario(tmp_path, profile, sim, lambda skip: inject(sim, profile.data_path, skip), caplog)


def scenario(
    tmp_path: Path,
    profile: Any,
    sim: Simulator,
    inject: Callable[[int], None],
    caplog: Any,
    where: tuple[str, ...] = ("127.0.0.1:",),
) -> None:
    """The three steps of the module docstring; `inject(skip)` sets the fault up."""
    caplog.set_level(logging.INFO)
    name = profile.name
    control = Control(tmp_path, profile, sim)
    truth = control.ids()
    clean_requests = len(sim.requests) + sum(len(c.requests) for c in sim.companions())
    bound = 2 * clean_requests + 10  # every request tried twice, a login or two more
    run = SyncRun(tmp_path / "run", [profile.source(sim)])

    # 1. A backfill meets the fault after its first data request.
    inject(1)
    report, overran, requests = poll(run, sim, name)
    assert not overran, f"poll still running after {GUARD}s"
    assert_clear_answer(report, caplog, where)
    assert requests <= bound, f"{requests} requests (a clean backfill makes {clean_requests})"
    partial = native_ids(run)

    # 2. The vendor recovers: the next poll completes and misses nothing.
    sim.clear_faults()
    report, overran, _ = poll(run, sim, name)
    assert report.ok and not overran, report.error
    stored = native_ids(run)
    assert partial <= stored
    assert stored == truth, f"{report.summary()}; lost {sorted(truth - stored)[:5]}"

    # 3. Growth, then the fault on an incremental poll's first data request.
    profile.grow(sim, 5)
    inject(0)
    report, overran, requests = poll(run, sim, name)
    assert not overran, f"poll still running after {GUARD}s"
    assert_clear_answer(report, caplog, where)
    assert requests <= bound
    assert stored <= native_ids(run), "a faulted poll lost stored records"

    sim.clear_faults()
    report, _, _ = poll(run, sim, name)
    assert report.ok, report.error
    assert native_ids(run) == control.ids()
    run.close()


# A watermark taken from vendor times (FleetIT's newest record, Akinon's, Pegasus's) three
# days ahead would ask only for the future once the vendor's clock is right, and miss what is
# new: `logd.cap_watermark` keeps it at our clock.


@pytest.mark.parametrize("skew", [timedelta(days=3), timedelta(days=-3)], ids=["future", "past"])
def test_clock_skew_loses_nothing_once_the_clock_is_right(
    tmp_path: Path,
    profile: Any,
    sim: Simulator,
    skew: timedelta,
    caplog: Any,
) -> None:
    name = profile.name
    control = Control(tmp_path, profile, sim)
    control.ids()
    run = SyncRun(tmp_path / "run", [profile.source(sim)])
    sim.skew_clock(skew)
    report, overran, _ = poll(run, sim, name)
    assert not overran
    assert_clear_answer(report, caplog)

    sim.clear_faults()
    profile.grow(sim, 5)
    report, _, _ = poll(run, sim, name)
    assert report.ok, report.error
    # Records seen while the vendor's clock was wrong, and every one added since.
    assert native_ids(run) >= control.ids()
    run.close()


# Maestra's export parts come from a second origin, streamed: faults in the middle of a part.
PART_FAULTS: dict[str, Fault] = {
    "reset-mid-part": FAULTS["reset-mid-body"],
    "html-error-page-as-part": FAULTS["html-error-page"],
    "5xx-run-on-part": FAULTS["5xx-run"],
    "wrong-encoding-part": FAULTS["wrong-encoding"],
    "drip-part": FAULTS["drip"],
    "gzip-bomb-part": lambda s, p, k: s.gzip_bomb(80 * 2**20, times=TIMES, path=p, skip=k),
}
PART_XFAIL: dict[str, pytest.MarkDecorator] = {}


@pytest.mark.parametrize(
    "fault", [pytest.param(f, marks=PART_XFAIL.get(f, ()), id=f) for f in PART_FAULTS]
)
def test_a_fault_in_a_maestra_part(
    tmp_path: Path, fault: str, caplog: Any, profiles: dict[str, Any]
) -> None:
    profile = profiles["maestra"]
    sim: Any = profile.make()
    if fault == "wrong-encoding-part":
        sim.gzip = "never"  # a plain part labelled gzip (a gzip part would be labelled right)
    sim.start()
    try:
        inject = PART_FAULTS[fault]
        # A part's URL is signed: the error names the export and the part instead.
        scenario(
            tmp_path,
            profile,
            sim,
            lambda skip: inject(sim.files, "/exports/", skip),
            caplog,
            where=("127.0.0.1:", "part "),
        )
    finally:
        sim.stop()
