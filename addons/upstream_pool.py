"""Lets as many calls reach the upstream at once as wxgate's own limits allow, and
measures how long a call waits for an upstream connection that wxgate did not hold.

mitmproxy lets each client connection hold at most 5 upstream connections per address
(`ConnectionHandler.max_conns`, a `Semaphore(5)` per address, taken in `open_connection`
for a connection's whole life), and proxies an HTTP/2 phone to an HTTP/1.1 upstream
with one upstream connection per stream: the 6th to 10th stream that
`limits.concurrency` let through would wait there. So each client connection's
`max_conns` is replaced, when it connects, by one sized to wxgate's limits. This and
`abort.py` are the two places that reach into mitmproxy's connection handler.

A call's upstream wait runs from the moment it was ready to go upstream (its last byte
read, or its head judged for a streamed request, which goes upstream while its body
arrives) to the moment mitmproxy starts connecting the upstream connection opened for it
(a call that reuses an open connection waits for none). Over `UPSTREAM_WAIT_LOG_MS` it is
logged as `upstream_wait`; `waited_s` tells NetworkTimeout how much of a call's time the
phone would not have spent.

A call is tracked from its head, and only when it may wait: an HTTP/1 client sends its
next call only once the last one is answered, so a call whose client connection already
holds an open connection to its address gets that one (mitmproxy reuses it) and waits for
none. Should that connection close in between, the call gets a new one untracked: its
wait is then the connect hooks' few milliseconds, and goes unmeasured.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from . import events
from .abort import connection_handler
from .concurrency_limit import COUNTED_APIS
from .policy.config import Config
from .state import Runtime
from .verdict import answered, flow_fields

Address = tuple[str, int]

# mitmproxy's own cap (proxy/server.py); kept on top of wxgate's for the calls wxgate
# does not count (media, web-view, other clients on the same connection).
MITMPROXY_CONNS_PER_ADDRESS = 5
UPSTREAM_WAIT_LOG_MS = 50


def connections_per_address(config: Config) -> int:
    """How many upstream connections one client connection may hold to one address.

    Invariant: never below mitmproxy's own 5, and at least as many as wxgate lets
    counted calls run at once over one client connection (every app's pools full), so
    that `limits.concurrency`, not mitmproxy, is what the 11th call meets.
    """
    limits = config.limits
    pools = 1 if limits.concurrency_pool == "shared" else len(COUNTED_APIS)
    return MITMPROXY_CONNS_PER_ADDRESS + limits.concurrency * pools * max(1, len(config.apps))


class ConnectionCaps(collections.defaultdict[Address, asyncio.Semaphore]):
    """A client connection's `max_conns`: one semaphore per upstream address, sized by
    `cap()` when the address is first used and grown (never shrunk) when the cap grows."""

    def __init__(self, cap: Callable[[], int]) -> None:
        super().__init__()
        self.cap = cap
        self.sizes: dict[Address, int] = {}

    def __missing__(self, address: Address) -> asyncio.Semaphore:
        self.sizes[address] = self.cap()
        semaphore = self[address] = asyncio.Semaphore(self.sizes[address])
        return semaphore

    def fit(self, address: Address) -> int:
        """Grow the address's semaphore to the current cap; the size it now has."""
        size = self.cap()
        if address not in self:
            return size
        for _ in range(size - self.sizes[address]):
            self[address].release()  # one more place, and a waiter woken
        self.sizes[address] = max(size, self.sizes[address])
        return self.sizes[address]


def install_caps(handler: Any, cap: Callable[[], int]) -> ConnectionCaps | None:
    """Replace a fresh connection handler's `max_conns` (mitmproxy internal API);
    None when it does not look as in mitmproxy 11/12, and then nothing is changed."""
    current = getattr(handler, "max_conns", None)
    if type(current) is not collections.defaultdict or current:
        return None
    caps = ConnectionCaps(cap)
    handler.max_conns = caps
    return caps


@dataclass(eq=False)
class _Call:
    """A call from its head until its response or error."""

    flow: http.HTTPFlow
    # When its head was judged; once it has a connection, when it was ready (`_ready_at`)
    ready: float
    # The upstream connection mitmproxy opened for this call, when it did
    server: connection.Server | None = None
    # When the server_connect hooks were done: the wait for mitmproxy's cap starts here
    hooked: float = 0.0
    cap: int = 0
    reported: bool = False


class UpstreamPool:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._caps: dict[str, ConnectionCaps] = {}  # client id -> its connection caps
        self._calls: dict[str, _Call] = {}  # flow id -> call
        # client id -> {flow id: call}: tracked calls no connection was opened for yet
        self._unmatched: dict[str, dict[str, _Call]] = {}
        self._by_server: dict[str, _Call] = {}  # server id -> the call it was opened for
        # (client id, address) -> its open upstream connections, by server id
        self._open: dict[tuple[str, Address], set[str]] = {}
        self._broken = False

    def cap(self) -> int:
        return connections_per_address(self.runtime.config)

    def client_connected(self, client: connection.Client) -> None:
        if client.error is not None or self._broken:
            return
        handler = connection_handler(client)
        if handler is None:
            return
        caps = install_caps(handler, self.cap)
        if caps is None:
            self._broken = True  # say it once, then keep mitmproxy's own cap
            events.logger().error(
                "wxgate_error", hook="UpstreamPool.client_connected",
                error="mitmproxy's connection handler has no fresh max_conns; "
                      f"upstream connections stay capped at {MITMPROXY_CONNS_PER_ADDRESS}")
            return
        self._caps[client.id] = caps

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        data = flow.request.data
        client = flow.client_conn.id
        if data.http_version.startswith(b"HTTP/1") and self._open.get(
                (client, (data.host, data.port))):
            return  # an HTTP/1 client's connection held open for this address: reused
        if not flow.live or answered(flow):
            return
        call = _Call(flow, time.time())
        self._calls[flow.id] = call
        self._unmatched.setdefault(client, {})[flow.id] = call

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """The last hook before mitmproxy takes a place under its cap for this connection."""
        address = data.server.address
        if address is None or data.server.error:
            return
        caps = self._caps.get(data.client.id)
        cap = caps.fit(address) if caps is not None else MITMPROXY_CONNS_PER_ADDRESS
        # mitmproxy asks for connections in the order calls became ready: the call ready
        # longest for this address that has none yet (a call given an open connection,
        # HTTP/2 or keep-alive, has one). The address is the request's now: an addon may
        # have pointed it elsewhere since its head.
        waiting = self._unmatched.get(data.client.id, {})
        first: tuple[float, _Call] | None = None
        for flow_id, call in list(waiting.items()):
            flow = call.flow
            if flow.server_conn.timestamp_start is not None:
                del waiting[flow_id]
            elif _address(flow) == address and (
                    ready := _ready_at(call)) is not None and (first is None or ready < first[0]):
                first = ready, call
        if first is not None:
            ready, call = first
            call.ready = ready  # from now on, the call's own
            del waiting[call.flow.id]
            call.server, call.hooked, call.cap = data.server, time.time(), cap
            self._by_server[data.server.id] = call
        if not waiting:
            self._unmatched.pop(data.client.id, None)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is not None:
            self._open.setdefault((data.client.id, data.server.address), set()).add(
                data.server.id)
        call = self._by_server.get(data.server.id)
        if call is not None:
            self._report(call)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        call = self._by_server.pop(data.server.id, None)
        if call is not None:
            self._report(call)

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._by_server.pop(data.server.id, None)
        if data.server.address is None:
            return
        key = (data.client.id, data.server.address)
        servers = self._open.get(key)
        if servers is not None:
            servers.discard(data.server.id)
            if not servers:
                del self._open[key]

    def response(self, flow: http.HTTPFlow) -> None:
        self._end(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._end(flow)

    def _end(self, flow: http.HTTPFlow) -> None:
        call = self._calls.pop(flow.id, None)
        if call is None:
            return
        client = flow.client_conn.id
        waiting = self._unmatched.get(client)
        if waiting is not None and waiting.pop(flow.id, None) is not None and not waiting:
            del self._unmatched[client]
        self._report(call)  # a call that ended while still waiting, too

    def client_disconnected(self, client: connection.Client) -> None:
        self._caps.pop(client.id, None)
        self._unmatched.pop(client.id, None)
        for key in [k for k in self._open if k[0] == client.id]:
            del self._open[key]
        for flow_id in [i for i, c in self._calls.items() if c.flow.client_conn.id == client.id]:
            del self._calls[flow_id]
        for server_id in [i for i, c in self._by_server.items()
                          if c.flow.client_conn.id == client.id]:
            del self._by_server[server_id]

    def waited_s(self, flow: http.HTTPFlow) -> float:
        """Seconds the call has waited for an upstream connection so far."""
        call = self._calls.get(flow.id)
        return 0.0 if call is None else self._wait_s(call)

    def _wait_s(self, call: _Call) -> float:
        """From when the call was ready until mitmproxy started to connect the connection
        opened for it; 0 for a call that reused an open connection, or is not ready yet.

        Before mitmproxy asks for a connection of its own for a call, it may hold the
        call behind another connection to the same address that is not up yet (HTTP/2
        to HTTP/1.1). Behind one waiting at the cap, that time counts; behind one in
        its handshake, not yet: a phone would be in a handshake of its own meanwhile.
        """
        if call.server is not None:
            return max(0.0, _started(call.server) - call.ready)
        if call.flow.server_conn.timestamp_start is None and self._at_cap(call) and (
                ready := _ready_at(call)) is not None:
            return max(0.0, time.time() - ready)
        return 0.0

    def _at_cap(self, call: _Call) -> bool:
        """A connection to the call's address, on its client connection, waits at the cap."""
        client = call.flow.client_conn.id
        address = _address(call.flow)
        return any(other.server is not None and other.server.timestamp_start is None
                   and other.server.address == address and other.flow.client_conn.id == client
                   for other in self._by_server.values())

    def _cap_for(self, call: _Call) -> int:
        caps = self._caps.get(call.flow.client_conn.id)
        if caps is None:
            return MITMPROXY_CONNS_PER_ADDRESS
        return caps.sizes.get(_address(call.flow)) or caps.cap()

    def _report(self, call: _Call) -> None:
        if call.reported:
            return
        wait_ms = round(self._wait_s(call) * 1000)
        if wait_ms <= UPSTREAM_WAIT_LOG_MS:
            return
        call.reported = True
        server = call.server
        host, port = server.address if server is not None and server.address else _address(
            call.flow)
        pool_ms = round((_started(server) - call.hooked) * 1000) if server is not None else 0
        events.logger().info(
            "upstream_wait", **flow_fields(call.flow), wait_ms=wait_ms, pool_ms=max(0, pool_ms),
            pool_cap=call.cap or self._cap_for(call), upstream=f"{host}:{port}",
            connected=server is not None and server.timestamp_start is not None,
        )


def _address(flow: http.HTTPFlow) -> Address:
    return flow.request.host, flow.request.port


def _ready_at(call: _Call) -> float | None:
    """When the call was ready to go upstream: its head for a streamed request, else its
    last byte; None while that is still to come."""
    request = call.flow.request
    return call.ready if request.stream else request.timestamp_end


def _started(server: connection.Server) -> float:
    """When mitmproxy started connecting (its cap passed), or now while still waiting."""
    return server.timestamp_start if server.timestamp_start is not None else time.time()
