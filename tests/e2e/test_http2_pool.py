"""A phone that speaks HTTP/2 (ALPN `h2` first), many calls as streams of one
connection: wxgate's `limits.concurrency`, not mitmproxy's 5 upstream connections per
address, decides how many reach the upstream at once; a wait for an upstream
connection is logged as `upstream_wait` and does not count against networkTimeout."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import h2.config
import h2.connection
import h2.events
import pytest
from wxgate.network_timeout import NetworkTimeout

from .harness import (
    APPID,
    MP_HEADERS,
    UPSTREAM_NAMES,
    Certs,
    Proxy,
    Upstream,
    base_config,
    send,
    start_proxy,
)

pytestmark = pytest.mark.e2e

APPID2 = "wxfedcba9876543210"
PLAIN_HEADERS = {"User-Agent": "curl/8"}  # not a mini program: wxgate counts none of it
MULTIPART = {**MP_HEADERS, "Content-Type": "multipart/form-data; boundary=b"}


def _referer(appid: str) -> dict[str, str]:
    return {**MP_HEADERS, "Referer": f"https://servicewechat.com/{appid}/0/page-frame.html"}


@dataclass
class Outcome:
    status: int | None = None  # None: the stream was reset (the phone's fail callback)
    done_s: float | None = None  # seconds after the phone connected
    body: bytes = b""


class H2Phone:
    """One TLS connection through the proxy's CONNECT tunnel, ALPN `h2` first as a
    phone's, carrying every call as a stream."""

    def __init__(self, proxy: Proxy, host: str = "api.example.com") -> None:
        self.host = host
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        assert b" 200 " in raw.recv(1024)
        ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.start = time.monotonic()
        self.outcomes: dict[int, Outcome] = {}

    def call(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
             body: bytes = b"") -> int:
        sid: int = self.conn.get_next_available_stream_id()
        extra = [(k.lower(), v) for k, v in (MP_HEADERS if headers is None else headers).items()]
        if body:
            extra.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, [(":method", method), (":scheme", "https"),
                                     (":authority", self.host), (":path", path), *extra],
                               end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.outcomes[sid] = Outcome()
        return sid

    def wait(self, timeout: float = 15.0) -> list[Outcome]:
        """Every call's outcome, in the order they were made."""
        deadline = time.monotonic() + timeout
        while any(o.done_s is None for o in self.outcomes.values()):
            left = deadline - time.monotonic()
            assert left > 0, f"calls still open: {self.outcomes}"
            self.sock.settimeout(left)
            data = self.sock.recv(65535)
            assert data, f"the proxy closed the connection: {self.outcomes}"
            now = time.monotonic() - self.start
            for event in self.conn.receive_data(data):
                outcome = self.outcomes.get(getattr(event, "stream_id", 0))
                if outcome is None:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    outcome.status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    outcome.body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    outcome.done_s = now
                elif isinstance(event, h2.events.StreamReset):
                    outcome.status, outcome.done_s = None, now
            self.sock.sendall(self.conn.data_to_send())
        return list(self.outcomes.values())

    def close(self) -> None:
        self.sock.close()


def _waves(outcomes: list[Outcome], ms: int) -> list[int]:
    """How many successful calls of `ms` each ended in each wave: wave n ends between
    (n + 0.75) and (n + 1.75) times `ms` after the phone connected (the proxy only adds)."""
    counts: dict[int, int] = {}
    for o in outcomes:
        if o.status == 200 and o.done_s is not None:
            wave = int(o.done_s / (ms / 1000) + 0.25) - 1
            counts[wave] = counts.get(wave, 0) + 1
    return [counts[w] for w in sorted(counts)]


def _slow_calls(phone: H2Phone, n: int, ms: int, tag: str,
                headers: dict[str, str] | None = None) -> None:
    for i in range(n):
        phone.call(f"/slow?ms={ms}&tag={tag}{i}", headers)


@pytest.fixture(scope="module")
def upstream(certs: Certs) -> Iterator[Upstream]:
    """The harness's upstream, with room for 20 connections arriving at once: with the
    default backlog of 5 some SYNs are dropped and retried a second later."""
    server = Upstream(certs.server_context)
    server.server.socket.listen(64)
    yield server
    server.close()


@pytest.fixture(scope="module")
def resolve_map(upstream: Upstream) -> dict[str, str]:
    return {name: f"127.0.0.1:{upstream.port}" for name in UPSTREAM_NAMES[:5]}


def _proxy(session_dir: Path, certs: Certs, resolve: dict[str, str], name: str,
           **config: Any) -> Proxy:
    return start_proxy(session_dir / f"h2pool-{name}", base_config(resolve, **config),
                       certs.ca_file)


@pytest.fixture(scope="module")
def queueing(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    proxy = _proxy(session_dir, certs, resolve_map, "queue")
    yield proxy
    proxy.stop()


def test_fifteen_streams_reach_the_upstream_ten_at_a_time(queueing: Proxy, upstream: Upstream):
    upstream.wait_idle()
    phone = H2Phone(queueing)
    _slow_calls(phone, 15, 800, "q")
    outcomes = phone.wait()
    phone.close()
    assert [o.status for o in outcomes] == [200] * 15
    assert upstream.peak[APPID] == 10
    assert _waves(outcomes, 800) == [10, 5]
    queued = [v for v in queueing.violations("concurrency.exceeded") if "tag=q" in v["url"]]
    assert [v["action"] for v in queued] == ["queued"] * 5
    # Nothing waited at mitmproxy's cap.
    assert [e for e in queueing.log()
            if e.get("event") == "upstream_wait" and e["pool_ms"] > 50] == []


def test_blocked_stream_spares_its_siblings(queueing: Proxy, upstream: Upstream):
    upstream.wait_idle()
    phone = H2Phone(queueing)
    _slow_calls(phone, 3, 300, "sib")
    blocked = phone.call("/hello?unknown-app", _referer("wx1111111111111111"))
    outcomes = phone.wait()
    phone.close()
    assert phone.outcomes[blocked].status is None
    assert [o.status for o in outcomes if o is not phone.outcomes[blocked]] == [200] * 3


def test_block_with_response_answers_each_stream_alone(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream):
    proxy = _proxy(session_dir, certs, resolve_map, "answering", block_with="response")
    try:
        phone = H2Phone(proxy)
        unknown = phone.call("/hello?unknown-app", _referer("wx1111111111111111"))
        redirect = phone.call("/respond?status=302&location="
                              + quote("https://evil.example.net/landing", safe=""))
        sibling = phone.call("/hello?sibling")
        phone.wait()
        phone.close()
        assert phone.outcomes[sibling].status == 200
        answers = [phone.outcomes[sid] for sid in (unknown, redirect)]
        assert [a.status for a in answers] == [403, 403]
        assert [(body["rule"], body["errMsg"]) for body in map(json.loads, (
            a.body for a in answers))] == [
            ("referer.appid_mismatch", None),
            ("domain.redirect_not_listed", "request:fail redirect url not in domain list")]
    finally:
        proxy.stop()


def test_fail_mode_refuses_the_five_over_the_limit(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream):
    proxy = _proxy(session_dir, certs, resolve_map, "fail", limits={"over_concurrency": "fail"})
    try:
        upstream.wait_idle()
        phone = H2Phone(proxy)
        _slow_calls(phone, 15, 800, "f")
        outcomes = phone.wait()
        phone.close()
        assert sorted(o.status or 0 for o in outcomes) == [0] * 5 + [200] * 10
        assert upstream.peak[APPID] == 10
        refused = [v for v in proxy.violations("concurrency.exceeded") if "tag=f" in v["url"]]
        assert [(v["action"], v["errMsg"]) for v in refused] == [
            ("blocked", "request:fail exceed max task count")] * 5
    finally:
        proxy.stop()


def test_per_api_pools_run_ten_of_each_interface(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream):
    config = base_config(resolve_map, limits={"concurrency_pool": "per_api"})
    config["apps"][0]["domains"]["uploadFile"].append("https://api.example.com")
    proxy = start_proxy(session_dir / "h2pool-per-api", config, certs.ca_file)
    try:
        upstream.wait_idle()
        phone = H2Phone(proxy)
        _slow_calls(phone, 15, 800, "r")
        for i in range(15):
            phone.call(f"/slow?ms=800&tag=u{i}", MULTIPART, "POST", b"--b\r\n\r\nx\r\n--b--\r\n")
        outcomes = phone.wait()
        phone.close()
        assert [o.status for o in outcomes] == [200] * 30
        assert upstream.peak[APPID] == 20
        assert _waves(outcomes, 800) == [20, 10]
        queued = proxy.violations("concurrency.exceeded")
        assert sorted(v["api"] for v in queued) == ["request"] * 5 + ["uploadFile"] * 5
    finally:
        proxy.stop()


def test_background_fails_exactly_the_apps_streams(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str], upstream: Upstream):
    config = base_config(resolve_map, limits={"background_grace_s": 0})
    config["apps"].append(dict(config["apps"][0], appid=APPID2))
    proxy = start_proxy(session_dir / "h2pool-background", config, certs.ca_file)
    try:
        upstream.wait_idle()
        phone = H2Phone(proxy)
        _slow_calls(phone, 6, 1500, "fg", _referer(APPID2))
        _slow_calls(phone, 6, 1500, "bg", _referer(APPID))
        deadline = time.monotonic() + 5
        while upstream.active.get(APPID, 0) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert send(proxy, f"http://wxgate.local/apps/{APPID}/background", method="POST",
                    headers={"Content-Type": "application/json"}, body=b"{}").status == 200
        outcomes = phone.wait()
        phone.close()
        assert [o.status for o in outcomes] == [200] * 6 + [None] * 6
        assert len(proxy.violations("background.interrupted")) == 6
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def narrow(session_dir: Path, certs: Certs, resolve_map: dict[str, str]) -> Iterator[Proxy]:
    """concurrency 2: mitmproxy's cap is 5 + 2 = 7 connections per address."""
    config = base_config(resolve_map, limits={"concurrency": 2})
    config["apps"][0]["network_timeout"] = {"request": 1000}
    proxy = start_proxy(session_dir / "h2pool-narrow", config, certs.ca_file)
    yield proxy
    proxy.stop()


def _fill_the_cap(phone: H2Phone, upstream: Upstream, ms: int, tag: str) -> None:
    """7 calls wxgate does not count, held by the upstream: the cap is full."""
    _slow_calls(phone, 7, ms, tag, PLAIN_HEADERS)
    deadline = time.monotonic() + 5
    while upstream.active.get("*", 0) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_wait_at_mitmproxys_cap_is_logged_as_upstream_wait(narrow: Proxy, upstream: Upstream):
    upstream.wait_idle()
    phone = H2Phone(narrow)
    _fill_the_cap(phone, upstream, 800, "cap")
    late = [phone.call(f"/slow?ms=100&tag=late{i}", PLAIN_HEADERS) for i in range(2)]
    outcomes = phone.wait()
    phone.close()
    assert [o.status for o in outcomes] == [200] * 9
    assert upstream.peak["*"] == 7
    lines = narrow.wait_for_log(lambda e: e.get("event") == "upstream_wait"
                                and "tag=late" in e["url"])
    assert len(lines) == len(late)
    assert {(line["pool_cap"], line["connected"]) for line in lines} == {(7, True)}
    assert all(500 < line["wait_ms"] < 1500 for line in lines)
    # The first waited at the cap itself; mitmproxy held the second behind it.
    assert max(line["pool_ms"] for line in lines) > 500


@pytest.mark.skipif("upstream" not in inspect.signature(NetworkTimeout).parameters,
                    reason="NetworkTimeout does not take UpstreamPool's waits yet (issue 17)")
def test_a_wait_at_mitmproxys_cap_does_not_time_a_call_out(narrow: Proxy, upstream: Upstream):
    """networkTimeout 1000 ms; both calls wait ~1.5 s at the cap. The quick one (300 ms
    upstream) succeeds; the slow one (3 s) fails 1 s after its wait, not before."""
    upstream.wait_idle()
    phone = H2Phone(narrow)
    _fill_the_cap(phone, upstream, 1500, "hold")
    sent = time.monotonic() - phone.start
    quick = phone.call("/slow?ms=300&tag=quick", _referer(APPID))
    slow = phone.call("/slow?ms=3000&tag=slow", _referer(APPID))
    phone.wait()
    phone.close()
    assert phone.outcomes[quick].status == 200
    assert phone.outcomes[slow].status is None
    timeouts = narrow.violations("timeout.exceeded")
    assert [v["url"].rsplit("tag=", 1)[1] for v in timeouts] == ["slow"]
    waited_ms = timeouts[0]["upstream_wait_ms"]
    assert 1000 < waited_ms < 2000
    ended = phone.outcomes[slow].done_s
    assert ended is not None
    assert ended - sent == pytest.approx(1.0 + waited_ms / 1000, abs=0.3)


class H2Upstream:
    """An HTTPS upstream that speaks only HTTP/2: /slow?ms=N answers after N ms. It
    records its peak of simultaneous requests and how many requests each connection
    carried."""

    def __init__(self, certs: Certs) -> None:
        now = datetime.now(UTC)
        leaf = certs.ca.issue_cert(*UPSTREAM_NAMES, not_before=now - timedelta(days=1),
                                   not_after=now + timedelta(days=90))
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(self.tls)
        self.tls.set_alpn_protocols(["h2"])
        self.active = self.peak = 0
        self.per_connection: list[int] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        index = len(self.per_connection)
        self.per_connection.append(0)
        while data := await reader.read(65535):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.per_connection[index] += 1
                    path = dict(event.headers)[b":path"].decode()
                    asyncio.ensure_future(self._answer(conn, writer, event.stream_id, path))
            writer.write(conn.data_to_send())
        writer.close()

    async def _answer(self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter,
                      stream_id: int, path: str) -> None:
        ms = int(parse_qs(urlsplit(path).query).get("ms", ["0"])[0])
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(ms / 1000)
        self.active -= 1
        body = f"hello over h2 {path}".encode()
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(body))),
                                      ("content-type", "text/plain")])
        conn.send_data(stream_id, body, end_stream=True)
        writer.write(conn.data_to_send())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_an_http2_upstream_gets_ten_streams_on_one_connection(
        session_dir: Path, certs: Certs, resolve_map: dict[str, str]):
    h2_upstream = H2Upstream(certs)
    resolve = {**resolve_map, "api.example.com": f"127.0.0.1:{h2_upstream.port}"}
    proxy = _proxy(session_dir, certs, resolve, "h2-upstream")
    try:
        phone = H2Phone(proxy)
        _slow_calls(phone, 15, 800, "h2")
        outcomes = phone.wait()
        phone.close()
        assert [o.status for o in outcomes] == [200] * 15
        assert outcomes[0].body.startswith(b"hello over h2")
        assert h2_upstream.peak == 10
        assert _waves(outcomes, 800) == [10, 5]
        assert [n for n in h2_upstream.per_connection if n] == [15]
    finally:
        proxy.stop()
        h2_upstream.close()
