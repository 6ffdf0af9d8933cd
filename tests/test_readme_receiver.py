"""The receiver the README shows really verifies what `logd webhooks test` sends."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from logd.cli.main import cli
from logd.plugin.testing import write_config

README = Path(__file__).resolve().parent.parent / "README.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_receiver_accepts_logd_and_rejects_a_forgery(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [code] = [b for b in blocks if "X-Signature" in b]
    port = free_port()
    env = {**os.environ, "LOGD_OPS_SECRET": "readme-secret"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code.replace("8080", str(port))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/hook"
        config = write_config(
            tmp_path, [], webhooks=[{"name": "ops", "url": url, "secret": "readme-secret"}]
        )
        sent = CliRunner().invoke(cli, ["webhooks", "test", "ops", "-c", str(config)])
        assert sent.exit_code == 0, sent.output
        forged = httpx.post(
            url,
            content=b'{"delivery_id":"x","entries":[]}',
            headers={"X-Timestamp": str(int(time.time())), "X-Signature": "0" * 64},
        )
        assert forged.status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    assert out.strip(), "the receiver printed nothing for a valid delivery"
