"""Running logd as its users do, in a process of its own, and what that process cost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class Ran:
    """One finished process: wall time, peak resident memory, output."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def logd(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run `logd ARGS` (the venv's console script); wall time and the child's own peak RSS."""
    return run([str(BIN / "logd"), *args], env=env)


def run(argv: list[str], env: dict[str, str] | None = None) -> Ran:
    """Run `argv` to completion, sampling its peak RSS (VmHWM) while it runs.

    Not wait4's ru_maxrss: Linux carries that over fork and exec, so a child of a large
    benchmark process would report the benchmark's own peak.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        text=True,
    )
    peak_kb = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_kb
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):  # a high-water mark: no peak is missed
                        peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    return Ran(time.perf_counter() - started, peak_kb / 1024, proc.returncode, out, err)
