"""Real parts for end-to-end tests: a local HTTPS/HTTP upstream that counts what
reaches it, a `wxgate run` subprocess on a free port, and a client that goes
through the proxy (absolute-form for http://, CONNECT + TLS for https://).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
import yaml
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

UPSTREAM_NAMES = [
    "api.example.com", "upload.example.com", "cdn.example.com", "ws.example.com",
    "evil.example.net", "api.weixin.qq.com", "localhost", "127.0.0.1",
]
APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"
MP_HEADERS = {"Referer": REFERER, "User-Agent": "Mozilla/5.0 (Linux; Android 14) "
              "MicroMessenger/8.0.50 MiniProgramEnv/android"}


class Upstream:
    """An HTTP(S) server on 127.0.0.1:0 that records connections and requests."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        # Simultaneous /slow requests now, and the peak, overall and per Referer appid.
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        # (path, time.time()) of /slow requests whose client went away while held
        self.closed_early: list[tuple[str, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner.lock:
                    owner.requests.append({
                        "method": self.command, "path": self.path,
                        "headers": dict(self.headers.items()), "body": body,
                    })
                if self.path.startswith("/slow"):
                    if not owner.hold(self.path, self.headers.get("Referer", ""),
                                      self.connection):
                        self.close_connection = True
                        return
                payload = f"hello from upstream {self.path}".encode()
                if self.path.startswith("/respond?"):
                    # /respond?status=302&location=...&ctype=...&body=<hex>
                    query = parse_qs(urlsplit(self.path).query)
                    payload = bytes.fromhex(query.get("body", [""])[0])
                    self.send_response(int(query.get("status", ["200"])[0]))
                    if "location" in query:
                        self.send_header("Location", query["location"][0])
                    self.send_header("Content-Type", query.get("ctype", ["text/plain"])[0])
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_request

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # Ten or more calls connect at once; the default backlog of 5 drops SYNs.
            request_queue_size = 64
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = super().get_request()
                with owner.lock:
                    owner.connections += 1
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold(self, path: str, referer: str, sock: socket.socket) -> bool:
        """Answer /slow after ms=N; False if the client closed the connection meanwhile."""
        ms = int(path.split("ms=")[1].split("&")[0]) if "ms=" in path else 500
        app = referer.split("/")[3] if referer.count("/") > 3 else "?"
        with self.lock:
            for key in ("*", app):
                self.active[key] = self.active.get(key, 0) + 1
                self.peak[key] = max(self.peak.get(key, 0), self.active[key])
        deadline = time.monotonic() + ms / 1000
        try:
            while (left := deadline - time.monotonic()) > 0:
                # Nothing more is sent on this connection while it waits, so
                # readable means closed.
                readable, _, _ = select.select([sock], [], [], min(left, 0.01))
                if readable:
                    with self.lock:
                        self.closed_early.append((path, time.time()))
                    return False
            return True
        finally:
            with self.lock:
                for key in ("*", app):
                    self.active[key] -= 1

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(self.active.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            self.peak.clear()

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.connections, len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    server_context: ssl.SSLContext
    # The SNI of every TLS handshake the upstreams saw, in order.
    sni_seen: list[str | None] = field(default_factory=list)


def make_certs(tmp: Path) -> Certs:
    ca = trustme.CA()
    ca_file = tmp / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # Inside Apple ATS's 825-day limit (trustme's default spans centuries), so the
    # certificate rules pass for every platform unless a test breaks one on purpose.
    now = datetime.now(UTC)
    leaf = ca.issue_cert(*UPSTREAM_NAMES, not_before=now - timedelta(days=1),
                         not_after=now + timedelta(days=90))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    certs = Certs(ca, ca_file, ctx)
    ctx.sni_callback = lambda _sock, name, _ctx: certs.sni_seen.append(name)
    return certs


@dataclass
class Proxy:
    proc: subprocess.Popen[str]
    port: int
    workdir: Path
    confdir: Path
    log_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def ca_file(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def log(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def violations(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("event") == "violation"
                and (rule is None or e.get("rule") == rule)]

    def wait_for_log(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.log() if predicate(e)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            if self.pump is not None:
                self.pump.join(5)  # it reads stdout to EOF, then stdout can be closed
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def wxgate_cmd() -> list[str]:
    """The installed `wxgate` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "wxgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "wxgate.cli"]


def start_proxy(
    workdir: Path, config: dict[str, Any], upstream_ca: Path | None = None,
    extra: list[str] | None = None, cmd: list[str] | None = None,
) -> Proxy:
    """Start `wxgate run` on a free port and wait for its banner."""
    workdir.mkdir(parents=True, exist_ok=True)
    confdir = workdir / "mitmproxy"
    log_path = workdir / "violations.jsonl"
    config = {**config, "log": {"path": str(log_path), "console": "json"}}
    cfg_file = workdir / "wxgate.yaml"
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False))
    args = cmd or [*wxgate_cmd(), "run", "-c", str(cfg_file), "-p", "0",
                   "--listen-host", "127.0.0.1"]
    args += ["--set", f"confdir={confdir}"]
    if upstream_ca:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    args += extra or []
    proc = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    port_box: list[int] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r"wxgate proxy listening on [^\s]*:(\d+)", line)
            if match and not port_box:
                port_box.append(int(match[1]))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not port_box:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("wxgate did not start:\n" + "".join(lines))
        time.sleep(0.05)
    return Proxy(proc, port_box[0], workdir, confdir, log_path, lines, reader)


@dataclass
class Reply:
    status: int | None  # None: the connection was closed, as the client's fail callback
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""


def send(
    proxy: Proxy, url: str, headers: dict[str, str] | None = None, method: str = "GET",
    body: bytes | None = None, timeout: float = 10.0,
) -> Reply:
    """One request through the proxy, the way a phone's WeChat sends it."""
    parts = urlsplit(url)
    headers = dict(headers or {})
    try:
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", proxy.port, timeout=timeout, context=ctx)
            conn.set_tunnel(parts.hostname or "", parts.port or 443)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
        else:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
            target = url
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return Reply(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, error=f"{type(exc).__name__}: {exc}")


def status(proxy: Proxy) -> dict[str, Any]:
    """The control API's /status, reached through the proxy as `wxgate ctl --proxy` does."""
    reply = send(proxy, "http://wxgate.local/status")
    assert reply.status == 200, reply
    result: dict[str, Any] = json.loads(reply.body)
    return result


# How a refused WebSocket reaches the client: a 403 answer, or the connection closed while the
# client is still writing its handshake (the two race; both are the refusal the phone sees).
# InvalidStatus is an InvalidHandshake.
SOCKET_REFUSED = (InvalidHandshake, ConnectionClosed, OSError, EOFError)
# The WebSocket opens that stalled and were tried again (see open_socket).
STALLED_OPENS: list[str] = []


def open_socket(proxy: Proxy, url: str, source: str | None = None) -> ClientConnection:
    """A WebSocket as a phone's wx.connectSocket opens it through the proxy (its own
    connection, the mini program's Referer and User-Agent), from `source` if given; tried
    once more when its handshake times out.

    About one WebSocket open in a thousand through the proxy stalls here (at the previous
    stop's code too, commit 590bf37): the proxy accepts the connection and never sees the
    upgrade request, so its head timeout closes it 30 s later, while no hook of wxgate has
    run for it (the head timeout's own disarm never ran). Plain HTTPS through the same
    proxy has not shown it. Not understood yet; retried so that these tests judge wxgate's
    rules, and recorded in STALLED_OPENS.
    """
    tls = ssl.create_default_context(cafile=str(proxy.ca_file)) if url.startswith(
        "wss:") else None
    options: dict[str, Any] = {
        "proxy": f"http://127.0.0.1:{proxy.port}", "ssl": tls,
        "additional_headers": {"Referer": REFERER},
        "user_agent_header": MP_HEADERS["User-Agent"], "open_timeout": 10,
        "source_address": (source, 0) if source else None}
    try:
        return ws_connect(url, **options)
    except TimeoutError:
        STALLED_OPENS.append(url)
        return ws_connect(url, **options)


def socket_refused(proxy: Proxy, url: str, source: str | None = None) -> bool:
    """Whether the proxy refuses this WebSocket (the socket is closed at once if not)."""
    try:
        with open_socket(proxy, url, source):
            return False
    except SOCKET_REFUSED:
        return True


def burst(proxy: Proxy, urls: list[str], headers: list[dict[str, str]] | dict[str, str],
          timeout: float = 30.0, methods: list[str] | None = None) -> list[Reply]:
    """Send all at once, one connection each, as concurrent wx.request calls do."""
    header_list = headers if isinstance(headers, list) else [headers] * len(urls)
    replies: list[Reply | None] = [None] * len(urls)
    gate = threading.Barrier(len(urls))

    def one(i: int) -> None:
        gate.wait()
        method = methods[i] if methods else "GET"
        body = b"--b\r\n\r\nx\r\n--b--\r\n" if method == "POST" else None
        replies[i] = send(proxy, urls[i], header_list[i], method=method, body=body,
                          timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return [r or Reply(None, error="thread did not finish") for r in replies]


def base_config(resolve: dict[str, str], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mode": "enforce",
        "scope": "miniprogram",
        "block_with": "fail",
        "resolve": resolve,
        "apps": [{
            "appid": APPID,
            "version": "0",
            "domains": {
                "request": ["https://api.example.com", "https://api.example.com:8443"],
                "uploadFile": ["https://upload.example.com"],
                "downloadFile": ["https://cdn.example.com"],
                "connectSocket": ["wss://ws.example.com"],
            },
        }],
    }
    config.update(overrides)
    return config


def iter_fields() -> Iterator[str]:
    """SPEC §5's always-present fields of a violation line."""
    yield from (
        "timestamp", "event", "rule", "severity", "action", "appid", "app_version", "api",
        "method", "url", "host", "port", "client", "flow_id", "detail", "errMsg", "errno",
        "platform",
    )
