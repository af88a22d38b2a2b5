"""Captured sessions through real processes: `mitmdump -C` replays a capture through the
live wxgate addons against a local upstream, and the audit command runs as a user runs it,
on hostile inputs too (SPEC §8)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mitmproxy.io import tnetstring
from wxgate.cli import SCRIPT

from ..audit_helpers import MP, T0, make_flow, read_jsonl, write_config, write_flows
from .harness import MP_HEADERS, Certs, Upstream, base_config, burst, send, start_proxy, wxgate_cmd
from .test_report_e2e import huge_line, run_bounded, symlink_to_dev_zero

pytestmark = pytest.mark.e2e


def test_client_replay_enforces_the_live_rules_on_a_captured_session(
        tmp_path: Path, certs: Certs, upstream: Upstream, resolve_map: dict[str, str]):
    """`mitmdump -C capture -s addons/wxgate_addons.py`: a violating replayed request is blocked
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
        [sys.executable, "-m", "wxgate.cli", "audit", str(capture),
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


# --- hostile inputs -------------------------------------------------------------------------

def nested_list(depth: int) -> bytes:
    """A tnetstring list nested `depth` deep."""
    value = b"0:]"
    for _ in range(depth):
        value = b"%d:%s]" % (len(value), value)
    return value


def good_record(tmp_path: Path) -> bytes:
    capture = write_flows(tmp_path / "one.mitm", [
        make_flow("https://evil.example.net/first", start=T0, headers=MP)])
    return capture.read_bytes()


def deep_request(path: Path) -> None:
    payload = tnetstring.dumps("type") + tnetstring.dumps("http") + \
        tnetstring.dumps("request") + nested_list(5000)
    path.write_bytes(b"%d:%s}" % (len(payload), payload))


def deep_field_after_a_good_flow(path: Path) -> None:
    """The index reads only `type` and `request`; the deep `comment` fails the load."""
    state = make_flow("https://evil.example.net/second", start=T0 + 1, headers=MP).get_state()
    record = tnetstring.dumps(state)
    payload = record[record.index(b":") + 1:-1] + tnetstring.dumps("extra") + \
        nested_list(5000)
    path.write_bytes(good_record(path.parent) + b"%d:%s}" % (len(payload), payload))


def huge_prefix_after_a_good_flow(path: Path) -> None:
    path.write_bytes(good_record(path.parent) + b"99999999999:" + b"x" * 1000)


HOSTILE_CAPTURES: dict[str, tuple[Callable[[Path], object], str]] = {
    "symlink to /dev/zero": (
        symlink_to_dev_zero, "is a character device (/dev/zero), not a capture file."),
    "FIFO": (os.mkfifo, "is a named pipe (FIFO), not a capture file."),
    "directory": (os.mkdir, "is a directory, not a capture file."),
    "HAR nested 200k deep": (
        lambda p: p.write_text('{"log": ' + "[" * 200_000),
        "is JSON that can't be read (nested too deeply to read), so it is not a HAR."),
    "HAR with a 5,000-digit number": (
        lambda p: p.write_text('{"log": {"entries": [' + "7" * 5000 + "]}}"),
        "is JSON that can't be read (a number of more than 4300 digits), so it is not a HAR."),
    "64 MiB line without newline": (
        huge_line, "is not valid JSON (Unterminated string starting at: line 1 column 31), "
                   "so it is neither a HAR nor a mitmproxy flow file."),
    "flow record with a huge length prefix": (
        lambda p: p.write_bytes(b"999999999999:" + b"x" * 1000),
        "is neither a mitmproxy flow file nor a HAR: it does not start with a flow record "
        "(not a tnetstring: the record ends early)."),
    "flow record nested 5,000 deep": (
        deep_request,
        "is neither a mitmproxy flow file nor a HAR: it does not start with a flow record "
        "(nested too deeply to read)."),
}


@pytest.mark.parametrize(("make", "sentence"), HOSTILE_CAPTURES.values(),
                         ids=HOSTILE_CAPTURES.keys())
def test_audit_of_a_hostile_file_exits_2_with_one_sentence_in_bounded_memory(
        tmp_path: Path, make: Callable[[Path], object], sentence: str):
    capture = tmp_path / "hostile.capture"
    make(capture)
    done = run_bounded("audit", str(capture), "-c", str(write_config(tmp_path)),
                       "--no-progress")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr == f"wxgate audit: {capture} {sentence}\n"


@pytest.mark.parametrize(("make", "start", "end"), [
    (huge_prefix_after_a_good_flow, " is cut short: flow 2, which starts at byte ",
     "; the 1 flow before it is still audited."),
    (deep_field_after_a_good_flow, ": the flow at byte ",
     " cannot be loaded (nested too deeply to read); the 1 flow that started before it is "
     "still audited."),
], ids=["huge length prefix", "deep nesting the index skips"])
def test_a_hostile_record_after_a_good_flow_still_reports_the_flow_before_it(
        tmp_path: Path, make: Callable[[Path], object], start: str, end: str):
    capture = tmp_path / "hostile.mitm"
    make(capture)
    jsonl = tmp_path / "audit.jsonl"
    done = run_bounded("audit", str(capture), "-c", str(write_config(tmp_path)),
                       "--no-progress", "--jsonl", str(jsonl))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [sentence] = done.stderr.splitlines()
    assert sentence.startswith(f"wxgate audit: {capture}{start}") and sentence.endswith(end)
    assert [e["url"] for e in read_jsonl(jsonl)] == ["https://evil.example.net/first"]


def test_the_audit_of_a_saved_session_agrees_with_the_live_proxy_flow_for_flow(
        tmp_path: Path, certs: Certs, upstream: Upstream, resolve_map: dict[str, str]):
    """A mixed session through a real `wxgate run` in `mode: report` (so every call is
    delivered and judged by every rule), saved by mitmproxy as it ran, then audited: each
    flow gets the same rules offline as live (background.* and tls.no_legacy aside, which
    need the live client or server)."""
    config = base_config(resolve_map, mode="report")
    # Far from every call's duration, so that live and offline can't fall on either side.
    config["apps"][0]["network_timeout"] = {"request": 1000}
    config["limits"] = {"concurrency": 4}
    capture = tmp_path / "session.mitm"
    proxy = start_proxy(tmp_path / "live", config, upstream_ca=certs.ca_file,
                        extra=["--set", f"save_stream_file={capture}"])
    no_referer = {"User-Agent": MP_HEADERS["User-Agent"]}
    try:
        for url, headers in [
            ("https://api.example.com/agree/ok", MP_HEADERS),
            ("https://evil.example.net/agree/unlisted", MP_HEADERS),
            ("http://api.example.com/agree/plain", MP_HEADERS),
            ("https://api.weixin.qq.com/agree/forbidden", MP_HEADERS),
            (f"https://127.0.0.1:{upstream.port}/agree/ip", MP_HEADERS),
            ("https://api.example.com/agree/no-referer", no_referer),
            ("https://api.example.com/slow?ms=2500&agree=timeout", MP_HEADERS),
        ]:
            send(proxy, url, headers, timeout=15)
        # Six calls of 1.6 s at once: two over the limit of four, well apart from the rest.
        time.sleep(0.5)
        burst(proxy, [f"https://api.example.com/slow?ms=1600&agree=burst{i}" for i in range(6)],
              MP_HEADERS)
        time.sleep(0.5)
    finally:
        proxy.stop()
    skipped = ("background.", "tls.no_legacy")
    live = Counter((e["flow_id"], e["rule"]) for e in proxy.violations()
                   if not e["rule"].startswith(skipped))
    out = tmp_path / "audit.jsonl"
    done = subprocess.run(
        [*wxgate_cmd(), "audit", str(capture), "-c", str(proxy.workdir / "wxgate.yaml"),
         "--cafile", str(certs.ca_file), "--jsonl", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    audited = Counter((e["flow_id"], e["rule"]) for e in read_jsonl(out)
                      if e["event"] == "violation")
    assert audited == live
    rules = Counter(rule for _, rule in live.elements())
    assert {"domain.not_listed", "scheme.insecure", "domain.forbidden", "domain.ip_address",
            "referer.rewritten", "timeout.exceeded", "concurrency.exceeded"} <= set(rules)
    assert rules["concurrency.exceeded"] >= 1  # two unless the machine stalls the burst
