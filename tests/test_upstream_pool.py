"""UpstreamPool: mitmproxy's per-address connection cap sized to wxgate's limits, and
the wait for an upstream connection measured per call."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import connection, http
from mitmproxy.addons import proxyserver
from mitmproxy.proxy import mode_specs, server, server_hooks
from mitmproxy.test import taddons
from wxgate import events
from wxgate.identify import IdentifyApp
from wxgate.upstream_pool import (
    MITMPROXY_CONNS_PER_ADDRESS,
    ConnectionCaps,
    UpstreamPool,
    connections_per_address,
    install_caps,
)

from .addon_helpers import APPID, CONFIG, mp_flow, runtime_for

UPSTREAM = ("127.0.0.1", 8443)
SECOND_APP = """\
  - appid: wxfedcba9876543210
    domains:
      request: [https://api.example.com]
"""


class _Writer:
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default if name == "transport_protocol" else ("127.0.0.1", 50000)


def _handler(options: Any) -> server.ConnectionHandler:
    return server.SimpleConnectionHandler(None, _Writer(), options,
                                          mode_specs.ProxyMode.parse("regular"), {})


@pytest.mark.parametrize(("limits", "apps", "cap"), [
    ("", "", 5 + 10),
    ("limits:\n  concurrency_pool: per_api\n", "", 5 + 30),
    ("limits:\n  concurrency: 4\n", SECOND_APP, 5 + 8),
    ("limits:\n  concurrency: 1\n  concurrency_pool: per_api\n", SECOND_APP, 5 + 6),
])
def test_cap_is_mitmproxys_five_plus_what_wxgate_lets_run(
        tmp_path: Path, limits: str, apps: str, cap: int):
    text = CONFIG.replace("log:\n", apps + "log:\n") + limits
    assert connections_per_address(runtime_for(tmp_path, text).config) == cap


def test_mitmproxy_handler_still_caps_each_address_at_five():
    """The internal API this module replaces, as mitmproxy 11/12 build it."""
    async def check() -> None:
        with taddons.context(proxyserver.Proxyserver()) as tctx:
            handler = _handler(tctx.options)
            semaphore = handler.max_conns[UPSTREAM]
            for _ in range(MITMPROXY_CONNS_PER_ADDRESS):
                await semaphore.acquire()
            assert semaphore.locked()

    asyncio.run(check())


def test_install_replaces_a_fresh_handlers_cap_only():
    async def check() -> None:
        with taddons.context(proxyserver.Proxyserver()) as tctx:
            handler = _handler(tctx.options)
            caps = install_caps(handler, lambda: 12)
            assert caps is not None and handler.max_conns is caps
            assert install_caps(handler, lambda: 12) is None  # already in use
            assert install_caps(object(), lambda: 12) is None

    asyncio.run(check())


def test_caps_grow_with_the_limit_and_never_shrink():
    async def check() -> None:
        size = [2]
        caps = ConnectionCaps(lambda: size[0])
        semaphore = caps[UPSTREAM]
        await semaphore.acquire()
        await semaphore.acquire()
        waiter = asyncio.ensure_future(semaphore.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        size[0] = 3
        assert caps.fit(UPSTREAM) == 3
        await asyncio.sleep(0)
        assert waiter.done()
        size[0] = 1
        assert caps.fit(UPSTREAM) == 3
        assert caps[("10.0.0.1", 443)] is caps[("10.0.0.1", 443)]
        assert caps.sizes[("10.0.0.1", 443)] == 1

    asyncio.run(check())


def _flows(n: int, http_version: str = "HTTP/2.0") -> list[http.HTTPFlow]:
    """n calls on one phone connection, each read whole just now, none with an upstream
    connection yet (HTTP/2 by default: only there do calls on one connection overlap)."""
    flows = [mp_flow(f"https://127.0.0.1:8443/slow?{i}") for i in range(n)]
    for flow in flows:
        flow.client_conn = flows[0].client_conn
        flow.server_conn = connection.Server(address=UPSTREAM)
        flow.request.http_version = http_version
        flow.request.timestamp_end = time.time()
    return flows


def _hook(flow: http.HTTPFlow, upstream: connection.Server) -> Any:
    return server_hooks.ServerConnectionHookData(server=upstream, client=flow.client_conn)


def _connect(pool: UpstreamPool, flow: http.HTTPFlow) -> connection.Server:
    upstream = connection.Server(address=UPSTREAM)
    pool.server_connect(_hook(flow, upstream))
    return upstream


def _connected(pool: UpstreamPool, flow: http.HTTPFlow, upstream: connection.Server,
               started: float) -> None:
    upstream.timestamp_start = started
    pool.server_connected(_hook(flow, upstream))
    flow.server_conn = upstream


def _log(tmp_path: Path) -> list[dict[str, Any]]:
    events.SINK.close()
    path = tmp_path / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_wait_runs_from_ready_to_connect_start_and_is_logged_once(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    pool, proxy = UpstreamPool(runtime), proxyserver.Proxyserver()
    events.configure("off")
    events.SINK.open(tmp_path / "log.jsonl")
    with taddons.context(proxy, pool) as tctx:
        first, second = _flows(2)
        handler = proxy.connections[first.client_conn.id] = _handler(tctx.options)
        pool.client_connected(first.client_conn)
        assert isinstance(handler.max_conns, ConnectionCaps)
        for flow in (first, second):
            IdentifyApp(runtime).requestheaders(flow)
            pool.requestheaders(flow)
        ready = second.request.timestamp_end
        first_upstream, second_upstream = _connect(pool, first), _connect(pool, second)
        assert pool.waited_s(second) >= 0  # still under mitmproxy's cap: it grows
        _connected(pool, first, first_upstream, ready + 0.01)
        _connected(pool, second, second_upstream, ready + 0.4)
        assert pool.waited_s(second) == pytest.approx(0.4)
        pool.response(second)
        pool.response(first)
        assert pool.waited_s(second) == 0
    lines = [e for e in _log(tmp_path) if e["event"] == "upstream_wait"]
    assert [(e["flow_id"], e["wait_ms"], e["appid"], e["upstream"], e["pool_cap"])
            for e in lines] == [(second.id, 400, APPID, "127.0.0.1:8443", 15)]


def test_a_call_still_under_the_cap_keeps_accruing_wait(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        (flow,) = _flows(1)
        pool.requestheaders(flow)
        flow.request.timestamp_end -= 1.0
        _connect(pool, flow)
        assert pool.waited_s(flow) == pytest.approx(1.0, abs=0.05)


def test_a_call_that_reused_a_connection_waited_for_none(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        reused, fresh = _flows(2)
        pool.requestheaders(reused)
        pool.requestheaders(fresh)
        reused.server_conn = connection.Server(address=UPSTREAM, timestamp_start=1.0)
        upstream = _connect(pool, fresh)  # opened for `fresh`, not for `reused`
        assert pool._by_server[upstream.id].flow is fresh
        assert pool.waited_s(reused) == 0


def test_answered_calls_and_calls_of_a_gone_client_are_not_tracked(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        answered, live = _flows(2)
        answered.response = http.Response.make(403)
        pool.requestheaders(answered)
        pool.requestheaders(live)
        _connect(pool, live)
        assert set(pool._calls) == {live.id}
        pool.client_disconnected(live.client_conn)
        assert (pool._calls, pool._unmatched, pool._by_server) == ({}, {}, {})


def test_a_call_held_behind_a_connection_at_the_cap_is_waiting(tmp_path: Path):
    """HTTP/2 to HTTP/1.1: mitmproxy holds the second call until the first call's
    connection is up, before asking for one of its own."""
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        first, behind = _flows(2)
        pool.requestheaders(first)
        pool.requestheaders(behind)
        first.request.timestamp_end -= 1.1  # ready first, so the first one connected
        behind.request.timestamp_end -= 1.0
        first_upstream = _connect(pool, first)
        assert pool.waited_s(behind) == pytest.approx(1.0, abs=0.05)
        first_upstream.timestamp_start = time.time()  # past the cap, in its handshake
        assert pool.waited_s(behind) == 0


def test_keep_alive_calls_do_not_pile_up(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        flows = _flows(50)
        for flow in flows:  # one after the other, all on the first one's connection
            pool.requestheaders(flow)
            flow.server_conn = connection.Server(address=UPSTREAM, timestamp_start=1.0)
            pool.response(flow)
        assert pool._unmatched == {} and pool._calls == {}


def test_a_call_waits_from_its_last_byte_not_from_its_head(tmp_path: Path):
    """An upload's own time is not upstream wait: a call is ready once its body is in,
    or at its head when it is streamed (it goes upstream while the body arrives)."""
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        upload, streamed = _flows(2)
        upload.request.timestamp_end = None  # its body still arriving
        pool.requestheaders(upload)
        assert pool.waited_s(upload) == 0
        early = _connect(pool, upload)  # a connection opened for someone else
        assert early.id not in pool._by_server
        upload.request.timestamp_end = time.time() - 1.0
        _connect(pool, upload)
        assert pool.waited_s(upload) == pytest.approx(1.0, abs=0.05)

        streamed.request.timestamp_end = None
        streamed.request.stream = True
        pool.requestheaders(streamed)
        pool._calls[streamed.id].ready -= 2.0
        _connect(pool, streamed)
        assert pool.waited_s(streamed) == pytest.approx(2.0, abs=0.05)


def test_the_call_ready_longest_for_the_address_gets_the_connection(tmp_path: Path):
    """Matched by the address the request has when it connects, which an addon may have
    changed since its head."""
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        later, elsewhere, sooner = _flows(3)
        for flow in (later, elsewhere, sooner):
            pool.requestheaders(flow)
        sooner.request.timestamp_end = later.request.timestamp_end - 1.0
        elsewhere.request.host = "10.0.0.9"
        assert pool._by_server[_connect(pool, later).id].flow is sooner
        moved = connection.Server(address=("10.0.0.9", 8443))
        pool.server_connect(_hook(elsewhere, moved))
        assert pool._by_server[moved.id].flow is elsewhere
        assert pool._by_server[_connect(pool, later).id].flow is later


def test_an_http1_call_with_a_connection_held_open_for_it_is_not_tracked(tmp_path: Path):
    """An HTTP/1 client's next call reuses the open connection: it waits for none, and
    costs no bookkeeping. Once that connection closes, calls are tracked again; HTTP/2
    calls always are (mitmproxy opens a connection per stream to an HTTP/1.1 upstream)."""
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        first, again, after_close = _flows(3, "HTTP/1.1")
        pool.requestheaders(first)
        upstream = _connect(pool, first)
        _connected(pool, first, upstream, time.time())
        pool.response(first)
        pool.requestheaders(again)
        assert again.id not in pool._calls and pool.waited_s(again) == 0
        (stream,) = _flows(1)
        stream.client_conn = first.client_conn
        pool.requestheaders(stream)
        assert stream.id in pool._calls
        pool.server_disconnected(_hook(first, upstream))
        pool.requestheaders(after_close)
        assert after_close.id in pool._calls
        pool.client_disconnected(first.client_conn)
        assert (pool._calls, pool._unmatched, pool._open) == ({}, {}, {})
