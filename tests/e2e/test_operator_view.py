"""The operator's terminal: a live one-line summary when stderr is a terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .harness import base_config, wxgate_cmd

pytestmark = pytest.mark.e2e


def test_live_summary_line_on_a_terminal(tmp_path: Path):
    config = base_config({}, log={"path": str(tmp_path / "v.jsonl"), "console": "off"})
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text(yaml.safe_dump(config))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*wxgate_cmd(), "run", "-c", str(cfg), "-p", "0", "--listen-host", "127.0.0.1",
         "--set", f"confdir={tmp_path / 'conf'}"],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, close_fds=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    try:
        while b"flows 0 | blocked 0 | violations: 0 error" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                seen += os.read(master, 4096)
        assert b"\r\x1b[2Kflows 0" in seen  # redrawn in place, one line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        os.close(master)
    assert proc.returncode == 0
