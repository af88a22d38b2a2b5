"""The event stream against a real `wxgate run`, driven by a client on 127.0.0.2: huge
client-controlled fields are cut in the log and behind /violations (SPEC §5), and a URL's
escape sequences reach a terminal escaped (SPEC §8)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .harness import MP_HEADERS, REFERER, Proxy, base_config, start_proxy, wxgate_cmd

pytestmark = pytest.mark.e2e

MAX_FIELD_BYTES = 2048  # log.max_field_bytes, by default
ONE_MB = "a" * 1_000_000


def call_from_lan(port: int, path: str, headers: dict[str, str]) -> bytes:
    """One absolute-form http:// call from 127.0.0.2 (a client that is not loopback)."""
    head = f"GET http://evil.example.net{path} HTTP/1.1\r\nHost: evil.example.net\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.socket() as sock:
        sock.settimeout(30)
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(head.encode("latin-1"))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def violations_from_loopback(proxy: Proxy) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(b"GET http://wxgate.local/violations HTTP/1.1\r\nHost: wxgate.local\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return time.monotonic() - started, json.loads(body)


def string_fields(event: dict[str, object]) -> list[str]:
    return [v for v in event.values() if isinstance(v, str)]


def test_calls_with_a_1mb_referer_url_or_user_agent_leave_cut_fields_in_log_and_memory(
        tmp_path: Path):
    proxy = start_proxy(tmp_path, base_config({}))
    try:
        call_from_lan(proxy.port, "/warm", MP_HEADERS)
        assert proxy.wait_for_log(lambda e: e.get("event") == "violation")
        before = proxy.log_path.stat().st_size
        calls = 6
        for i in range(calls):
            headers, path = dict(MP_HEADERS), f"/{i}"
            if i % 3 == 0:
                headers["Referer"] = f"{REFERER}?{ONE_MB}"
            elif i % 3 == 1:
                path += f"?{ONE_MB}"
            else:
                headers["User-Agent"] += f" {ONE_MB}"
            call_from_lan(proxy.port, path, headers)
        assert proxy.wait_for_log(lambda e: e.get("url", "").startswith("http://evil.example"
                                                                         ".net/5"))
        took, listed = violations_from_loopback(proxy)
    finally:
        proxy.stop()
    grown = proxy.log_path.stat().st_size - before
    assert grown < calls * 16 * 1024, grown  # was about 2 MB a call
    lines = [e for e in proxy.log() if e.get("event") == "violation"]
    for event in lines:
        for value in string_fields(event):
            assert len(value.encode()) <= MAX_FIELD_BYTES
    cut = [v for e in lines for v in string_fields(e) if "…[cut: " in v]
    assert any(v.endswith(" bytes]") for v in cut)
    assert any(v.startswith("http://evil.example.net/1?aaaa") for v in cut)  # the URL
    assert took < 5
    held = listed["violations"]
    assert isinstance(held, list) and held
    for event in held:
        for value in string_fields(event):
            assert len(value.encode()) <= MAX_FIELD_BYTES


_ANSI = re.compile(rb"\x1b\[[0-9;]*m")  # the console's own colors


def read_until(fd: int, out: bytearray, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        if found := re.search(pattern, _ANSI.sub(b"", bytes(out))):
            return found
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not seen in {bytes(out)[-2000:]!r}"
        readable, _, _ = select.select([fd], [], [], min(left, 0.2))
        if readable:
            try:
                out += os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                pass


def test_a_hostile_url_reaches_the_pretty_console_with_its_escapes_written_out(
        tmp_path: Path):
    config = base_config({})
    config["log"] = {"path": str(tmp_path / "violations.jsonl"), "console": "pretty"}
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text(yaml.safe_dump(config))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*wxgate_cmd(), "run", "-c", str(cfg), "-p", "0", "--listen-host", "127.0.0.1",
         "--set", f"confdir={tmp_path / 'mitmproxy'}"],
        stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, cwd=tmp_path)
    os.close(secondary)
    out = bytearray()
    try:
        port = int(read_until(primary, out, rb"wxgate proxy listening on \S*:(\d+)")[1])
        # Sets the terminal's title, clears the screen and backs up, on a terminal that obeys.
        hostile = "/\x1b]0;pwned\x07\x1b[2J\x08"
        call_from_lan(port, hostile, MP_HEADERS)
        read_until(primary, out, rb"scheme\.insecure[^\n]*\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        os.close(primary)
    line = next(raw for raw in bytes(out).splitlines() if b"scheme.insecure" in raw)
    assert b"\x1b]0;" not in line and b"\x07" not in line and b"\x1b[2J" not in line
    assert b"\x08" not in line
    assert rb"/\x1b]0;pwned\x07\x1b[2J\x08" in line
