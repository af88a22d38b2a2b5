"""The aborter on an HTTP/2 client connection: a timed-out call loses only its own
stream (RST_STREAM); the other call on the same connection completes."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from .harness import MP_HEADERS, Certs, Proxy, base_config, start_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxy(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    config = base_config(resolve_map)
    config["apps"][0]["network_timeout"] = {"request": 1000}
    proxy = start_proxy(session_dir / "h2", config, certs.ca_file)
    yield proxy
    proxy.stop()


def _h2_connection(proxy: Proxy) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
    assert b" 200 " in raw.recv(1024)
    ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(raw, server_hostname="api.example.com")
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def _send(conn: h2.connection.H2Connection, path: str) -> int:
    sid: int = conn.get_next_available_stream_id()
    extra = [(k.lower(), v) for k, v in MP_HEADERS.items()]
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                            (":authority", "api.example.com"), (":path", path), *extra],
                      end_stream=True)
    return sid


def test_timed_out_stream_is_reset_and_the_connection_lives_on(proxy: Proxy):
    tls, conn = _h2_connection(proxy)
    streams = {_send(conn, "/slow?ms=3000&h2=late"): "late",
               _send(conn, "/slow?ms=200&h2=quick"): "quick"}
    tls.sendall(conn.data_to_send())
    start = time.monotonic()
    outcome: dict[str, tuple[str, float]] = {}
    tls.settimeout(5)
    while len(outcome) < len(streams):
        data = tls.recv(65535)
        assert data, f"connection closed; got {outcome}"
        for event in conn.receive_data(data):
            name = streams.get(getattr(event, "stream_id", 0), "")
            if isinstance(event, h2.events.StreamReset):
                outcome[name] = ("reset", time.monotonic() - start)
            elif isinstance(event, h2.events.ResponseReceived):
                outcome[name] = (dict(event.headers)[b":status"].decode(),
                                 time.monotonic() - start)
            if outcome.get("late", ("",))[0] == "reset" and "after" not in streams.values():
                # The same connection must still carry a new call.
                streams[_send(conn, "/hello?h2=after")] = "after"
        tls.sendall(conn.data_to_send())
    tls.close()
    assert outcome["quick"][0] == "200"
    assert outcome["late"][0] == "reset"
    assert outcome["late"][1] == pytest.approx(1.0, abs=0.1)
    assert outcome["after"][0] == "200"
