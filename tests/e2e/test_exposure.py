"""On an office LAN (SPEC §8): no way in through the proxy, the host judged is the host
connected. A client on 127.0.0.2 stands in for another machine on the Wi-Fi (only the
proxy's own TCP peer 127.0.0.1/::1 is loopback); counting listeners prove that nothing was
contacted where that is the point."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from .harness import (
    APPID,
    MP_HEADERS,
    REFERER,
    Certs,
    Proxy,
    Upstream,
    base_config,
    send,
    start_proxy,
    status,
)

pytestmark = pytest.mark.e2e

LAN = "127.0.0.2"


class Listener:
    """A TCP (optionally TLS) server on host:0 that counts the connections it accepts."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.tls = tls
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def exchange(proxy: Proxy, data: bytes, source: str = LAN, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the proxy from `source`; everything read until close or timeout."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout,
                                    source_address=(source, 0))
    sock.sendall(data)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    sock.close()
    return out


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return head.startswith(b"HTTP/1.1 200 Connection established") or b" 403 " in head[:20]


def status_of(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else None


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        control_port = probe.getsockname()[1]
    config = base_config(resolve_map, control={"token": "s3cret"},
                         passthrough=[r"^mp\.weixin\.qq\.com$"])
    proxy = start_proxy(session_dir / "exposure", config, certs.ca_file,
                        ["--set", f"wxgate_control_port={control_port}"])
    proxy.control_port = control_port  # type: ignore[attr-defined]
    yield proxy
    proxy.stop()


# --- the control API is not reachable around its token ---------------------------------


@pytest.mark.parametrize("method, path", [
    ("POST", f"/apps/{APPID}/background"), ("POST", "/faults"), ("DELETE", "/faults"),
    ("GET", "/violations"), ("GET", "/status"),
])
def test_lan_client_cannot_reach_the_control_port_through_the_proxy(
        proxy: Proxy, method: str, path: str):
    port = proxy.control_port  # type: ignore[attr-defined]
    body = b'{"match": {}, "drop": 1}' if path == "/faults" and method == "POST" else b""
    for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"):
        reply = exchange(proxy, (
            f"{method} http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body)
        assert status_of(reply) == 403, (host, reply[:200])
        assert b"local_destination" in reply
    assert status(proxy)["apps"][APPID]["background"] is False
    assert status(proxy)["faults"] == []


def test_lan_client_with_a_broken_authorization_header_is_refused_not_forwarded(
        proxy: Proxy, upstream: Upstream):
    before = upstream.snapshot()
    reply = exchange(proxy, b"GET http://wxgate.local/status HTTP/1.1\r\nHost: wxgate.local\r\n"
                            b"Authorization: Bearer \xff\xfe\r\n\r\n")
    assert status_of(reply) == 401
    assert upstream.snapshot() == before


# --- the laptop's own services --------------------------------------------------------------


@pytest.mark.parametrize("request_text", [
    "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    "GET http://localhost:{port}/admin HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n",
    "GET http://0x7f000001:{port}/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    "GET http://127.1:{port}/ HTTP/1.1\r\nHost: 127.1:{port}\r\n\r\n",
    "GET http://[::ffff:127.0.0.1]:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET http://admin.localhost:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    "CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n",
    "CONNECT 0.0.0.0:{port} HTTP/1.1\r\nHost: 0.0.0.0:{port}\r\n\r\n",
])
def test_lan_client_never_reaches_a_service_on_the_proxy_machine(
        proxy: Proxy, listener: Listener, request_text: str):
    before = listener.accepted
    reply = exchange(proxy, request_text.format(port=listener.port).encode())
    time.sleep(0.2)
    assert status_of(reply) == 403, reply[:300]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["reason"] == "local_destination"
    assert listener.accepted == before
    refused = proxy.wait_for_log(lambda e: e.get("event") == "refused"
                                 and e.get("reason") == "local_destination")
    assert refused and refused[-1]["client"] == LAN


def test_name_that_resolves_to_this_machine_is_refused_at_connect(
        proxy: Proxy, listener: Listener):
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip("the hostname does not resolve here")
    if not any(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"{name} resolves to {addresses}, not loopback")
    before = listener.accepted
    reply = exchange(proxy, f"GET http://{name}:{listener.port}/ HTTP/1.1\r\n"
                            f"Host: {name}\r\n\r\n".encode())
    assert status_of(reply) in (403, 502), reply[:300]
    assert listener.accepted == before


def test_the_same_service_is_reachable_from_this_machine_itself(
        proxy: Proxy, listener: Listener):
    """Loopback clients (DevTools on the laptop) keep their access to local services."""
    before = listener.accepted
    exchange(proxy, f"GET http://127.0.0.1:{listener.port}/ HTTP/1.1\r\n"
                    f"Host: 127.0.0.1\r\n\r\n".encode(), source="127.0.0.1", timeout=2)
    assert listener.accepted == before + 1


# --- the host judged is the host connected ------------------------------------------------


@pytest.fixture(scope="module")
def other_host(certs: Certs) -> Iterator[Listener]:
    """A TLS-less counting listener on 127.0.0.3, the 'other host' a client tries to reach."""
    server = Listener("127.0.0.3")
    yield server
    server.close()


def _tunnel(proxy: Proxy, target: str, sni: str, alpn: list[str] | None = None,
            source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5,
                                   source_address=(source, 0))
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert b" 200 " in raw.recv(1024)
    ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx.wrap_socket(raw, server_hostname=sni)


def _mp_head(host: str, path: str = "/hello") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", f"Referer: {REFERER}",
             f"User-Agent: {MP_HEADERS['User-Agent']}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_connect_to_an_ip_with_a_listed_host_header_is_a_host_mismatch(
        proxy: Proxy, other_host: Listener):
    tls = _tunnel(proxy, f"127.0.0.3:{other_host.port}", "api.example.com")
    tls.sendall(_mp_head("api.example.com"))
    try:
        data = tls.recv(65536)
    except (ssl.SSLError, OSError):
        data = b""
    tls.close()
    assert b" 200 " not in data
    line = proxy.wait_for_log(lambda e: e.get("rule") == "domain.host_mismatch")[-1]
    assert line["errMsg"] == "request:fail url not in domain list"
    assert line["errno"] == 600002
    assert "127.0.0.3" in line["detail"]
    assert other_host.accepted == 0


def test_absolute_form_https_url_naming_an_ip_with_a_listed_host_is_a_host_mismatch(
        proxy: Proxy, other_host: Listener):
    head = (f"GET https://127.0.0.3:{other_host.port}/x HTTP/1.1\r\nHost: api.example.com\r\n"
            f"Referer: {REFERER}\r\nUser-Agent: {MP_HEADERS['User-Agent']}\r\n\r\n")
    reply = exchange(proxy, head.encode(), source="127.0.0.1", timeout=3)
    assert status_of(reply) != 200
    assert proxy.wait_for_log(lambda e: e.get("rule") == "domain.host_mismatch"
                              and "/x" in str(e.get("url")))
    assert not proxy.wait_for_log(lambda e: e.get("rule") == "tls.hostname", timeout=0.5)
    assert other_host.accepted == 0


def test_http2_authority_naming_a_listed_host_over_a_tunnel_to_an_ip_is_a_host_mismatch(
        proxy: Proxy, other_host: Listener):
    tls = _tunnel(proxy, f"127.0.0.3:{other_host.port}", "api.example.com", ["h2"])
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https"),
                          (":authority", "api.example.com"), (":path", "/h2mismatch"),
                          ("referer", REFERER), ("user-agent", MP_HEADERS["User-Agent"])],
                      end_stream=True)
    tls.sendall(conn.data_to_send())
    tls.settimeout(5)
    answered = False
    try:
        while not answered and (data := tls.recv(65536)):
            for event in conn.receive_data(data):
                answered |= isinstance(event, (h2.events.StreamReset,
                                               h2.events.ResponseReceived))
            tls.sendall(conn.data_to_send())
    except (ssl.SSLError, OSError):
        pass
    tls.close()
    assert proxy.wait_for_log(lambda e: e.get("rule") == "domain.host_mismatch"
                              and "/h2mismatch" in str(e.get("url")))
    assert other_host.accepted == 0


def test_passthrough_needs_the_connect_host_to_match_not_only_the_sni(
        proxy: Proxy, other_host: Listener):
    """CONNECT <ip> with SNI mp.weixin.qq.com is not tunnelled untouched to that IP."""
    tls = _tunnel(proxy, f"127.0.0.3:{other_host.port}", "mp.weixin.qq.com")
    # The handshake was answered by the proxy with a certificate of its own CA: intercepted,
    # and under connection_strategy=lazy nothing is connected before a request.
    assert tls.getpeercert() is not None
    time.sleep(0.3)
    tls.close()
    assert other_host.accepted == 0


def test_websocket_upgrade_with_more_tokens_still_counts_as_a_socket(
        proxy: Proxy, upstream: Upstream):
    """`Upgrade: websocket, foo` to a host listed only for request is judged as connectSocket."""
    before = upstream.snapshot()
    tls = _tunnel(proxy, "api.example.com:443", "api.example.com")
    tls.sendall(("GET /socket HTTP/1.1\r\nHost: api.example.com\r\n"
                 "Upgrade: WebSocket, foo\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"Referer: {REFERER}\r\nUser-Agent: {MP_HEADERS['User-Agent']}\r\n\r\n"
                 ).encode())
    try:
        data = tls.recv(65536)
    except (ssl.SSLError, OSError):
        data = b""
    tls.close()
    assert b" 101 " not in data
    line = proxy.wait_for_log(lambda e: e.get("url", "").endswith("/socket")
                              and e.get("event") == "violation")[-1]
    assert line["api"] == "connectSocket"
    assert line["rule"] == "domain.not_listed"
    assert upstream.snapshot() == before


# --- cross-origin state changes ------------------------------------------------------------


@pytest.mark.parametrize("headers, expected", [
    ({"Origin": "https://evil.example", "Content-Type": "text/plain"}, 403),
    ({"Origin": "https://evil.example", "Content-Type": "application/json"}, 403),
    ({"Content-Type": "text/plain"}, 403),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 403),
    ({"Content-Type": "application/json"}, 201),
])
def test_state_changes_need_json_and_no_origin_even_from_loopback(
        proxy: Proxy, headers: dict[str, str], expected: int):
    body = json.dumps({"match": {"url": "*/never-matches/*"}, "delay_ms": 1}).encode()
    reply = send(proxy, "http://wxgate.local/faults", headers, method="POST", body=body)
    assert reply.status == expected, reply
    send(proxy, "http://wxgate.local/faults", {"Content-Type": "application/json"},
         method="DELETE")


# --- who may connect at all ----------------------------------------------------------------


def test_client_outside_clients_is_refused_at_connect_and_logged_once(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream):
    config = base_config(resolve_map, clients=["127.0.0.1/32"])
    proxy = start_proxy(session_dir / "clients", config, certs.ca_file)
    try:
        before = upstream.snapshot()
        for _ in range(3):
            reply = exchange(proxy, b"GET http://api.example.com/hello HTTP/1.1\r\n"
                                    b"Host: api.example.com\r\n\r\n", timeout=3)
            assert reply == b""
        assert upstream.snapshot() == before
        assert send(proxy, "https://api.example.com/hello").status == 200  # from 127.0.0.1
        time.sleep(0.3)
        refused = [e for e in proxy.log() if e.get("event") == "refused"]
        assert [(e["reason"], e["client"]) for e in refused] == [("client_not_allowed", LAN)]
    finally:
        proxy.stop()


# --- bounded under hostile input -----------------------------------------------------------


def _rss_kb(proxy: Proxy) -> int:
    for line in Path(f"/proc/{proxy.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _open_fds(proxy: Proxy) -> int:
    return len(list(Path(f"/proc/{proxy.proc.pid}/fd").iterdir()))


@pytest.mark.parametrize("block_with", ["fail", "response"])
def test_blocked_upload_body_is_never_buffered_and_the_connection_ends(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream,
        block_with: str):
    """A blocked 64 MiB upload: the proxy reads (almost) none of it and ends the connection
    at once, so the phone's fail callback runs and no descriptor is left behind."""
    config = base_config(resolve_map, block_with=block_with)
    proxy = start_proxy(session_dir / f"upload-{block_with}", config, certs.ca_file)
    try:
        before_rss, before_fds = _rss_kb(proxy), _open_fds(proxy)
        size = 64 * 1024 * 1024
        tls = _tunnel(proxy, "evil.example.net:443", "evil.example.net", source=LAN)
        tls.settimeout(5)
        tls.sendall(("POST /up HTTP/1.1\r\nHost: evil.example.net\r\n"
                     f"Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n"
                     f"Referer: {REFERER}\r\nUser-Agent: {MP_HEADERS['User-Agent']}\r\n\r\n"
                     ).encode())
        chunk = b"x" * 65536
        sent = 0
        start = time.monotonic()
        ended = ""
        try:
            while sent < size:
                tls.sendall(chunk)
                sent += len(chunk)
            ended = "sent whole" if tls.recv(1024) else "closed after the body"
        except TimeoutError:
            ended = "hung: the proxy neither read nor closed"
        except (OSError, ssl.SSLError) as exc:
            ended = f"closed ({type(exc).__name__})"
        elapsed = time.monotonic() - start
        tls.close()
        assert ended.startswith("closed ("), ended
        assert elapsed < 3, f"the connection ended only after {elapsed:.1f} s"
        assert sent < size // 4, f"the proxy read {sent >> 20} MiB of a blocked body"
        time.sleep(0.5)
        grown_mb = (_rss_kb(proxy) - before_rss) / 1024
        assert grown_mb < 24, f"RSS grew {grown_mb:.0f} MB for a blocked 64 MiB upload"
        assert _open_fds(proxy) <= before_fds + 1
        assert proxy.wait_for_log(lambda e: e.get("rule") == "domain.not_listed"
                                  and e.get("url", "").endswith("/up"))
    finally:
        proxy.stop()


def test_connections_without_a_request_head_are_closed(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str]):
    proxy = start_proxy(session_dir / "idle", base_config(resolve_map), certs.ca_file,
                        ["--set", "wxgate_head_timeout_ms=1000"])
    try:
        silent = [socket.create_connection(("127.0.0.1", proxy.port), source_address=(LAN, 0))
                  for _ in range(20)]
        half = socket.create_connection(("127.0.0.1", proxy.port), source_address=(LAN, 0))
        half.sendall(b"GET http://api.example.com/ HTTP/1.1\r\nHost: api")  # no end of head
        tunnel = socket.create_connection(("127.0.0.1", proxy.port), source_address=(LAN, 0))
        tunnel.sendall(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        assert b" 200 " in tunnel.recv(1024)
        start = time.monotonic()
        for sock in [*silent, half, tunnel]:
            sock.settimeout(5)
            assert sock.recv(1024) == b"", "the proxy should close it"
        elapsed = time.monotonic() - start
        assert elapsed == pytest.approx(1.0, abs=0.8)
        for sock in [*silent, half, tunnel]:
            sock.close()
        # A client that does send its request in time is served.
        assert send(proxy, "https://api.example.com/hello", MP_HEADERS).status == 200
    finally:
        proxy.stop()


def test_mitmweb_is_not_reachable_through_the_proxy_by_anyone(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str]):
    """CVE-2025-23217's path: a client asks the proxy for mitmweb's API on its own port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    proxy = start_proxy(session_dir / "web", base_config(resolve_map), certs.ca_file,
                        ["--web", "--set", f"web_port={web_port}",
                         "--set", "web_open_browser=false"])
    try:
        deadline = time.monotonic() + 20
        while True:  # mitmweb itself is up on its port
            try:
                socket.create_connection(("127.0.0.1", web_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mitmweb did not start"
                time.sleep(0.2)
        body = b'{"wxgate_mode": "report"}'
        for source in (LAN, "127.0.0.1"):
            reply = exchange(proxy, (
                f"PUT http://127.0.0.1:{web_port}/options HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{web_port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body, source=source)
            assert status_of(reply) == 403, (source, reply[:200])
            assert b"mitmweb" in reply
        assert status(proxy)["mode"] == "enforce"
    finally:
        proxy.stop()
