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


def _flows(n: int) -> list[http.HTTPFlow]:
    """n calls on one phone connection, none with an upstream connection yet."""
    flows = [mp_flow(f"https://127.0.0.1:8443/slow?{i}") for i in range(n)]
    for flow in flows:
        flow.client_conn = flows[0].client_conn
        flow.server_conn = connection.Server(address=UPSTREAM)
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
            pool.request(flow)
        ready = pool._calls[second.id].ready
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
        pool.request(flow)
        pool._calls[flow.id].ready -= 1.0
        _connect(pool, flow)
        assert pool.waited_s(flow) == pytest.approx(1.0, abs=0.05)


def test_a_call_that_reused_a_connection_waited_for_none(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        reused, fresh = _flows(2)
        pool.request(reused)
        pool.request(fresh)
        reused.server_conn = connection.Server(address=UPSTREAM, timestamp_start=1.0)
        upstream = _connect(pool, fresh)  # opened for `fresh`, not for `reused`
        assert pool._by_server[upstream.id].flow is fresh
        assert pool.waited_s(reused) == 0


def test_answered_calls_and_calls_of_a_gone_client_are_not_tracked(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        answered, live = _flows(2)
        answered.response = http.Response.make(403)
        pool.request(answered)
        pool.request(live)
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
        pool.request(first)
        pool.request(behind)
        pool._calls[behind.id].ready -= 1.0
        first_upstream = _connect(pool, first)
        assert pool.waited_s(behind) == pytest.approx(1.0, abs=0.05)
        first_upstream.timestamp_start = time.time()  # past the cap, in its handshake
        assert pool.waited_s(behind) == 0


def test_keep_alive_calls_do_not_pile_up(tmp_path: Path):
    pool = UpstreamPool(runtime_for(tmp_path))
    with taddons.context(pool):
        flows = _flows(50)
        for flow in flows:  # one after the other, all on the first one's connection
            pool.request(flow)
            flow.server_conn = connection.Server(address=UPSTREAM, timestamp_start=1.0)
            pool.response(flow)
        assert pool._unmatched == {} and pool._calls == {}
