"""The operator's terminal during a session (issue 18): on a terminal, one aligned line per
violation with its errMsg under it, the live summary line kept clear of every other line,
and none of mitmproxy's connection chatter unless -v asks for it; piped, JSON lines."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import termios
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from wxgate.cli import WEB_COLUMNS

from .harness import MP_HEADERS, REFERER, Proxy, base_config, send, start_proxy, wxgate_cmd

pytestmark = pytest.mark.e2e

IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800322c) "
             "NetType/WIFI Language/zh_CN MiniProgramEnv/iOS")
IPHONE = {"Referer": REFERER, "User-Agent": IPHONE_UA}
# The four calls of the issue: an unlisted host, http://, an IP address, WeChat's own API.
CALLS = [
    "https://evil.example.net/track?u=1",
    "http://api.example.com/login",
    "https://10.0.0.8/debug",
    "https://api.weixin.qq.com/cgi-bin/token",
]
# What a 100-column terminal shows for them (colors taken out): severity, rule, outcome,
# method and URL, device and platform; under the rule, the errMsg, and the detail only where
# it says more than that line.
EXPECTED = """\
error   domain.not_listed    blocked  GET https://evil.example.net/track?u=1           127.0.0.1 ios
        request:fail url not in domain list
error   scheme.insecure      blocked  GET http://api.example.com/login                 127.0.0.1 ios
        request:fail url not in domain list
error   domain.ip_address    blocked  GET https://10.0.0.8/debug                       127.0.0.1 ios
        request:fail url not in domain list — host is IP address 10.0.0.8 (allow_lan_ip is off); a
        wx.request call
error   domain.forbidden     blocked  GET https://api.weixin.qq.com/cgi-bin/token      127.0.0.1 ios
        request:fail url not in domain list"""

_COLOR = re.compile(rb"\x1b\[[0-9;]*m")
_CLEAR = b"\r\x1b[2K"  # the status line's "back to column 0, clear the line"
_STATUS = re.compile(rb"flows \d+ \| blocked \d+ \| violations: [^\r\n]*?\| in flight \d+")


class Terminal:
    """`wxgate run` on a pseudo-terminal of 100 columns, and what it has printed so far."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        config = base_config({}, log={"path": str(tmp_path / "v.jsonl"), "console": "pretty"})
        cfg = tmp_path / "wxgate.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.confdir = tmp_path / "mitmproxy"
        self.fd, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(
            [*wxgate_cmd(), "run", "-c", str(cfg), "-p", "0", "--listen-host", "127.0.0.1",
             "--set", f"confdir={self.confdir}", *extra],
            stdin=child, stdout=child, stderr=child, cwd=tmp_path, close_fds=True)
        os.close(child)
        self.out = bytearray()
        self.port = int(self.read_until(rb"wxgate proxy listening on \S*:(\d+)")[1])

    def read_until(self, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if found := re.search(pattern, _COLOR.sub(b"", bytes(self.out))):
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen in {bytes(self.out)[-3000:]!r}"
            readable, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if readable:
                try:
                    self.out += os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    pass

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.read_until(rb"wxgate summary: [^\n]*\n", timeout=15)
        finally:
            code = self.proc.wait(15)
            os.close(self.fd)
        return code

    def text(self) -> str:
        """The lines as a reader sees them: colors out, each redrawn status line gone."""
        raw = _COLOR.sub(b"", bytes(self.out))
        raw = re.sub(rb"\r\x1b\[2K" + _STATUS.pattern + rb"(?=\r\x1b\[2K)", b"", raw)
        return raw.replace(_CLEAR, b"").replace(b"\r\n", b"\n").decode()


def assert_live_line_stands_alone(raw: bytes) -> None:
    """Each drawing of the live line is followed by the clear that precedes the next line
    printed, never by text on the same line (the issue saw `in flight 0[02:13:31.077]`)."""
    plain = _COLOR.sub(b"", raw)
    drawn = list(re.finditer(re.escape(_CLEAR) + _STATUS.pattern, plain))
    assert drawn
    for status in drawn:
        after = plain[status.end():]
        assert after == b"" or after.startswith(_CLEAR), after[:120]


def call(port: int, confdir: Path, url: str) -> None:
    """One call as the iPhone's WeChat makes it: through the proxy, CONNECT for https."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        tls = ssl.create_default_context(cafile=str(confdir / "mitmproxy-ca-cert.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls)
        conn.set_tunnel(parts.hostname or "", 443)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        target = url
    try:
        conn.request("GET", target, headers=IPHONE)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # block_with: fail closes the connection, as the phone's fail callback sees it
    finally:
        conn.close()


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


def test_a_session_on_a_100_column_terminal_shows_one_line_per_violation_and_no_chatter(
        tmp_path: Path):
    terminal = Terminal(tmp_path)
    try:
        terminal.read_until(_STATUS.pattern)  # the live line is up before the first call
        for number, url in enumerate(CALLS, 1):
            call(terminal.port, terminal.confdir, url)
            terminal.read_until(rb"flows %d \| blocked %d " % (number, number))
    finally:
        code = terminal.stop()
    assert code == 0
    text = terminal.text()
    start = text.index("error   domain.not_listed")
    assert text[start:].startswith(EXPECTED + "\n"), text[start:]
    assert all(len(line) <= 100 for line in EXPECTED.splitlines())
    # mitmproxy's per-connection lines and per-flow lines are off by default.
    raw = bytes(terminal.out)
    for chatter in (b"client connect", b"client disconnect", b"Connection killed",
                    b"server connect"):
        assert chatter not in raw, chatter
    # The live line never shares a line with anything: every other line is printed after
    # it was cleared, and it comes back after.
    assert_live_line_stands_alone(raw)
    cleared_before = [m.start() for m in re.finditer(rb"error   ", _COLOR.sub(b"", raw))]
    assert len(cleared_before) == len(CALLS)
    for at in cleared_before:
        assert _COLOR.sub(b"", raw)[at - len(_CLEAR):at] == _CLEAR


def test_with_v_mitmproxys_connection_lines_come_back_and_keep_clear_of_the_live_line(
        tmp_path: Path):
    terminal = Terminal(tmp_path, "-v")
    try:
        terminal.read_until(_STATUS.pattern)
        call(terminal.port, terminal.confdir, CALLS[1])
        terminal.read_until(rb"client disconnect")
        terminal.read_until(rb"flows 1 \| blocked 1 ")
    finally:
        assert terminal.stop() == 0
    plain = _COLOR.sub(b"", bytes(terminal.out))
    assert b"client connect" in plain and b"Connection killed" in plain
    assert_live_line_stands_alone(plain)


def test_piped_output_is_json_lines_without_a_status_line_or_chatter(tmp_path: Path):
    """`log.console: pretty` prints JSON when stderr is not a terminal (a pipe, a file)."""
    config = base_config({}, log={"path": str(tmp_path / "v.jsonl"), "console": "pretty"})
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [*wxgate_cmd(), "run", "-c", str(cfg), "-p", "0", "--listen-host", "127.0.0.1",
         "--set", f"confdir={tmp_path / 'mitmproxy'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines: list[bytes] = []

    def read_until(needle: bytes) -> bytes:
        while not any(needle in line for line in lines):
            line = proc.stdout.readline() if proc.stdout else b""
            assert line, b"".join(lines)
            lines.append(line)
        return next(line for line in lines if needle in line)

    try:
        banner = read_until(b"wxgate proxy listening on")
        port = int(re.search(rb":(\d+)", banner)[1])  # type: ignore[index]
        call(port, tmp_path / "mitmproxy", CALLS[1])
        read_until(b'"violation"')
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
    lines += rest.splitlines(keepends=True)
    events = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert {"config_loaded", "violation", "shutdown"} <= {e["event"] for e in events}
    violation = next(e for e in events if e["event"] == "violation")
    assert violation["rule"] == "scheme.insecure" and violation["platform"] == "ios"
    everything = b"".join(lines)
    assert b"\x1b" not in everything  # no colors, no status line
    assert b"client connect" not in everything and b"Connection killed" not in everything


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _printed(proxy: Proxy, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, "".join(proxy.stdout_lines))):
        assert time.monotonic() < deadline, "".join(proxy.stdout_lines)
        time.sleep(0.05)
    return found


def test_mitmweb_shows_the_rule_ids_in_its_flow_list(tmp_path: Path):
    """`wxgate run --web` adds mitmweb's comment column, and the comment is the rule ids."""
    web_port = _free_port()
    proxy = start_proxy(tmp_path, base_config({}), extra=[
        "--web", "--set", f"web_port={web_port}", "--set", "web_open_browser=false"])
    try:
        url = _printed(proxy, rf"Web server listening at (http://127\.0\.0\.1:{web_port}"
                             r"/\?token=\w+)")[1]
        token = url.split("token=")[1]
        reply = send(proxy, "http://api.example.com/login", MP_HEADERS)
        assert reply.status is None  # blocked: the connection closed
        proxy.wait_for_log(lambda e: e.get("event") == "violation")

        def web(path: str) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{web_port}{path}",
                                             headers={"Authorization": f"Bearer {token}"})
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with direct.open(request, timeout=10) as answer:
                return json.loads(answer.read())

        columns = web("/options")["web_columns"]["value"]
        flows = web("/flows")
    finally:
        assert proxy.stop() == 0
    assert columns == list(WEB_COLUMNS) and "comment" in columns
    [blocked] = [f for f in flows if f.get("request", {}).get("path") == "/login"]
    assert blocked["comment"] == "wxgate: scheme.insecure"
    assert blocked["marked"] == "\N{NO ENTRY SIGN}"  # mitmweb's JSON names the mark's emoji
