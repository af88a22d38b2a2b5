"""Captures made in the test: mitmproxy flow files and HAR exports with chosen timestamps."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mitmproxy import certs, connection, http, io
from mitmproxy.websocket import WebSocketData, WebSocketMessage
from wsproto.frame_protocol import Opcode

APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"
UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"
MP = {"Referer": REFERER, "User-Agent": UA}
T0 = 1_764_000_000.0  # 2025-11-24, the capture's clock

CONFIG = f"""\
mode: enforce
apps:
  - appid: {APPID}
    domains:
      request: [https://api.example.com]
      downloadFile: [https://cdn.example.com]
      uploadFile: [https://upload.example.com]
      connectSocket: [wss://ws.example.com]
    network_timeout:
      request: 5000
log:
  path: live-log-must-stay-empty.jsonl
  console: "off"
"""


def write_config(tmp: Path, text: str = CONFIG) -> Path:
    path = tmp / "wxgate.yaml"
    path.write_text(text)
    return path


def tls_chain(host: str = "api.example.com") -> tuple[list[certs.Cert], trustme.CA]:
    """A good chain as a server sends it: leaf then intermediate (the root kept back)."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    # Valid at the capture's time, which is when the handshake is judged.
    captured = dt.datetime.fromtimestamp(T0, dt.UTC)
    leaf = intermediate.issue_cert(host, not_before=captured - dt.timedelta(days=1),
                                   not_after=captured + dt.timedelta(days=300))
    chain = [certs.Cert(x509.load_pem_x509_certificate(blob.bytes()))
             for blob in leaf.cert_chain_pems]
    return chain, root


def self_signed_chain(host: str = "api.example.com") -> list[certs.Cert]:
    """A leaf that is its own issuer, otherwise as a phone wants it (SAN, serverAuth, P-256,
    SHA-256, valid at the capture's time for less than 825 days)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    captured = dt.datetime.fromtimestamp(T0, dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(captured - dt.timedelta(days=1))
        .not_valid_after(captured + dt.timedelta(days=300))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return [certs.Cert(cert)]


def make_flow(
    url: str, *, start: float, duration: float = 0.05, method: str = "GET",
    headers: dict[str, str] | None = None, status: int = 200, body: bytes = b'{"ok":true}',
    content_type: str = "application/json; charset=utf-8", websocket_for: float | None = None,
    chain: Sequence[certs.Cert] = (), error: str | None = None,
) -> http.HTTPFlow:
    """One captured call: request at `start`, complete `duration` seconds later.

    `websocket_for` makes it a WebSocket that stays open that many seconds after the 101;
    `error` makes a call that failed instead of being answered.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    client = connection.Client(peername=("192.168.1.23", 50000), sockname=("0.0.0.0", 8080),
                               timestamp_start=start)
    server = connection.Server(address=(parts.hostname or "", port))
    if parts.scheme in ("https", "wss"):
        server.sni = parts.hostname
        server.tls_version = "TLSv1.3" if chain else None
        server.cipher = "TLS_AES_128_GCM_SHA256" if chain else None
        server.certificate_list = list(chain)
        server.timestamp_tls_setup = start + 0.01 if chain else None
    http_url = url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    # An HTTP/1.1 capture holds the Host header the client sent.
    req_headers = {"Host": parts.netloc, **(headers or {})}
    if websocket_for is not None:
        req_headers.update({"Connection": "Upgrade", "Upgrade": "websocket",
                            "Sec-WebSocket-Version": "13",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    request = http.Request.make(method, http_url, b"", req_headers)
    request.timestamp_start, request.timestamp_end = start, start + 0.001
    flow = http.HTTPFlow(client, server)
    flow.request = request
    end = start + duration
    if error is not None:
        from mitmproxy.flow import Error

        flow.error = Error(error, end)
        return flow
    if websocket_for is not None:
        response = http.Response.make(101, b"", {"Connection": "Upgrade",
                                                 "Upgrade": "websocket"})
        flow.websocket = WebSocketData(
            messages=[WebSocketMessage(Opcode.TEXT, True, b"hello", end + 0.1),
                      WebSocketMessage(Opcode.TEXT, False, b"world", end + 0.2)],
            closed_by_client=True, close_code=1000, timestamp_end=end + websocket_for)
    else:
        response = http.Response.make(status, body, {"Content-Type": content_type})
    response.timestamp_start, response.timestamp_end = end - 0.001, end
    flow.response = response
    return flow


def write_flows(path: Path, flows: Iterable[http.HTTPFlow]) -> Path:
    with path.open("wb") as fo:
        writer = io.FlowWriter(fo)
        for flow in flows:
            writer.add(flow)
    return path


def har_entry(url: str, *, start: float, duration_ms: float = 50, method: str = "GET",
              headers: dict[str, str] | None = None, status: int = 200,
              text: str = '{"ok":true}') -> dict[str, Any]:
    """One entry as DevTools exports it (the fields mitmproxy's HAR reader needs, and more)."""
    stamp = dt.datetime.fromtimestamp(start, dt.UTC).isoformat().replace("+00:00", "Z")
    return {
        "startedDateTime": stamp,
        "time": duration_ms,
        "request": {
            "method": method, "url": url, "httpVersion": "HTTP/1.1",
            "headers": [{"name": k, "value": v} for k, v in (headers or {}).items()],
            "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0,
        },
        "response": {
            "status": status, "statusText": "OK", "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "application/json; charset=utf-8"}],
            "cookies": [], "content": {"size": len(text), "mimeType": "application/json",
                                       "text": text},
            "redirectURL": "", "headersSize": -1, "bodySize": len(text),
        },
        "cache": {},
        "timings": {"send": 0, "wait": duration_ms, "receive": 0},
    }


def write_har(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {
        "name": "WeChat DevTools", "version": "1.06"}, "entries": entries}}))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]
