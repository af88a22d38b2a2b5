"""Captured sessions through real processes: `mitmdump -C` replays a capture through the
live wxgate addons against a local upstream, and the audit command runs as a user runs it."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from addons.cli import SCRIPT

from ..audit_helpers import MP, T0, make_flow, read_jsonl, write_config, write_flows
from .harness import Certs, Upstream, base_config

pytestmark = pytest.mark.e2e


def test_client_replay_enforces_the_live_rules_on_a_captured_session(
        tmp_path: Path, certs: Certs, upstream: Upstream, resolve_map: dict[str, str]):
    """`mitmdump -C capture -s addons/wxgate.py`: a violating replayed request is blocked
    before it leaves (the upstream never sees it) and logged; an allowed one arrives."""
    config = base_config(resolve_map)
    log = tmp_path / "violations.jsonl"
    config["log"] = {"path": str(log), "console": "off"}
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text(yaml.safe_dump(config))
    capture = write_flows(tmp_path / "session.mitm", [
        make_flow("https://api.example.com/replay-allowed", start=T0, headers=MP),
        make_flow("https://evil.example.net/replay-blocked", start=T0 + 1, headers=MP),
        # mitmproxy does not replay WebSockets; it says so and goes on.
        make_flow("wss://ws.example.com/replay-socket", start=T0 + 2, headers=MP,
                  websocket_for=1.0),
    ])
    seen_before = {r["path"] for r in upstream.requests}
    mitmdump = Path(sys.executable).parent / "mitmdump"
    done = subprocess.run(
        [str(mitmdump), "-C", str(capture), "-s", str(SCRIPT),
         "--set", f"wxgate_config={cfg}", "--set", f"confdir={tmp_path / 'mitmproxy'}",
         "--set", f"ssl_verify_upstream_trusted_ca={certs.ca_file}",
         # Replay needs no listening proxy; mitmdump exits when the replay is done.
         "--set", "server=false"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    arrived = [r for r in upstream.requests if r["path"] not in seen_before]
    assert [r["path"] for r in arrived] == ["/replay-allowed"]
    assert arrived[0]["headers"]["Host"] == "api.example.com"
    violations = [e for e in read_jsonl(log) if e["event"] == "violation"]
    assert [(e["rule"], e["action"], e["url"]) for e in violations] == [
        ("domain.not_listed", "blocked", "https://evil.example.net/replay-blocked")]
    assert "Can't replay WebSocket flows." in done.stdout


def test_audit_command_in_a_terminal_shows_progress_and_writes_every_report(tmp_path: Path):
    flows = [make_flow(f"https://api.example.com/{i}", start=T0 + i, headers=MP)
             for i in range(50)]
    flows.append(make_flow("https://evil.example.net/x", start=T0 + 60, headers=MP))
    capture = write_flows(tmp_path / "capture.mitm", flows)
    out = {name: tmp_path / f"audit.{name}" for name in ("html", "xml", "jsonl")}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "addons.cli", "audit", str(capture),
         "-c", str(write_config(tmp_path)), "--html", str(out["html"]),
         "--junit", str(out["xml"]), "--jsonl", str(out["jsonl"])],
        stdout=subprocess.PIPE, stderr=secondary, cwd=Path(SCRIPT).parent.parent)
    os.close(secondary)
    terminal = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(primary)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"auditing capture.mitm [" in terminal and b"100%" in terminal
    assert b"FAIL: 1 violation at or above error" in stdout
    assert [e["rule"] for e in read_jsonl(out["jsonl"])] == ["domain.not_listed"]
    assert out["html"].read_text().startswith("<!DOCTYPE html>")
    assert "<testsuites" in out["xml"].read_text()
