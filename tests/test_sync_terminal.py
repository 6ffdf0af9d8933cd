"""`logd sync` on a terminal: the live display, log lines and errors each shown once.

The terminal is a real one (tmux, 80x30), read back as the screen and its scrollback show it,
because what went wrong was how the lines were drawn: log lines written past the live display
made it leave a stale copy of itself each time (7 stacked copies) and drew over the lines.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from logd_fleetit import FleetITSimulator
from logd_maestra import MaestraSimulator

from logd.cli.sync import _RichProgress
from logd.engine.poller import SourceReport
from logd.plugin.testing import SyncRun, write_config

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Tmux:
    """One tmux server of our own (its own socket), one 80x30 window."""

    def __init__(self, socket: Path) -> None:
        self.base = ["tmux", "-S", str(socket)]

    def start(self, command: str) -> None:
        # The window's own size must rule: a COLUMNS the test run set would make logd draw
        # for a wider terminal than tmux shows.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", "80", "-y", "30", command], check=True, env=env
        )

    def screen(self) -> str:
        """The window and its scrollback, wrapped lines joined."""
        out = subprocess.run(
            [*self.base, "capture-pane", "-p", "-J", "-S", "-500"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path / "tmux.sock")
    yield term
    term.kill()


def test_sync_on_a_terminal_logs_through_the_display(tmp_path: Path, tmux: Tmux) -> None:
    with (
        MaestraSimulator(records=60, ready_after=3) as maestra,
        FleetITSimulator(records=120) as fleet,
    ):
        broken = {"name": "broken", "provider": "fleetit", "base_url": "http://127.0.0.1:9"}
        sources = [
            {**maestra.demo_source("maestra"), "backfill": "2d", "export_poll": "100ms"},
            fleet.demo_source("fleet"),
            {**broken, "token": "t", "retry": {"attempts": 2, "max_wait": 0.05}},
        ]
        config = write_config(tmp_path, sources, log_level="info")
        logd = shlex.join([sys.executable, "-m", "logd", "sync", "-c", str(config)])
        tmux.start(f"{logd}; echo EXIT=$?; sleep 60")
        deadline = time.monotonic() + 60
        while "EXIT=" not in (screen := tmux.screen()) and time.monotonic() < deadline:
            time.sleep(0.1)
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert "EXIT=1" in lines, screen
    # The INFO lines of the poll are there, printed above the display.
    assert any("INFO logd.source.maestra: export " in line for line in lines), screen
    # The display is gone (transient) and left no stale copies of itself behind.
    assert not any("━" in line or "starting" in line for line in lines), screen
    summaries = [line for line in lines if line.startswith(("maestra:", "fleet:", "broken:"))]
    assert [s.split(":")[0] for s in summaries] == ["maestra", "fleet", "broken"], screen
    assert summaries[1].startswith("fleet: 2 pages, 120 new, 0 updated")
    # The error once: on its own line, not also in the summary.
    assert "error" not in summaries[2]
    assert [line for line in lines if "error" in line.lower()] == [
        next(line for line in lines if line.startswith("error: broken: GET http://127.0.0.1:9/"))
    ]


def test_a_waiting_source_says_so_with_the_time(tmp_path: Path) -> None:
    with MaestraSimulator(records=20, ready_after=2) as maestra:
        run = SyncRun(tmp_path, [{**maestra.demo_source("m"), "backfill": "1d"}])
        seen: list[tuple[str | None, bool]] = []

        def progress(report: SourceReport) -> None:
            seen.append((report.waiting, report.waiting_since is not None))

        [report] = run.engine.sync([run.settings.source("m")], progress=progress)
        run.close()
    assert report.ok and report.new > 0
    # Waiting on the export before the first batch, then no longer once it is in.
    assert seen[0] == ("waiting on the vendor", True)
    assert seen[-1] == (None, False)

    display = _RichProgress([run.settings.source("m")])
    waiting = SourceReport("m", waiting="waiting on the vendor")
    waiting.waiting_since = time.monotonic() - 12
    display.update(waiting)
    [task] = display.progress.tasks
    [column] = [c for c in display.progress.columns if type(c).__name__ == "LineColumn"]
    assert str(column(task)) == "waiting on the vendor 12s"
