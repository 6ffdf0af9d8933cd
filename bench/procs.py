"""Running logd as its users do, in a process of its own, and what that process cost."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """Run `argv` to completion; its peak RSS comes from wait4, so it is this child's alone."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        text=True,
    )
    # communicate() reaps the child itself; read the pipes first, then wait4 for rusage.
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Ran(seconds, usage.ru_maxrss / 1024, proc.returncode, out, err)
