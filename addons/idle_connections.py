"""Closes client connections that send no complete request head in time (SPEC §8).

A connection that connects and then says nothing (or stops halfway through a head, or
opens a CONNECT tunnel and never starts a request in it) would otherwise hold a descriptor
forever; a few hundred of them stop the proxy. Each connection gets `wxgate_head_timeout_ms`
(30 s) from its start, and again after a CONNECT, to deliver a request head; tunnels
passed through untouched and plain TCP are not watched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set

from mitmproxy import connection, ctx, exceptions, http, tcp, tls
from mitmproxy.addonmanager import Loader

from . import events
from .abort import close_client
from .state import Runtime

DEFAULT_HEAD_TIMEOUT_MS = 30_000


class IdleConnections:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # client id -> the timer that closes it
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option("wxgate_head_timeout_ms", int, DEFAULT_HEAD_TIMEOUT_MS,
                          "Close a client connection that sends no request head for this "
                          "long after connecting or after a CONNECT (0: never).")

    def configure(self, updated: Set[str]) -> None:
        if "wxgate_head_timeout_ms" in updated and ctx.options.wxgate_head_timeout_ms < 0:
            raise exceptions.OptionsError("wxgate_head_timeout_ms must be 0 or more")

    def client_connected(self, client: connection.Client) -> None:
        if client.error is None:
            self._arm(client)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # The tunnel must now carry a request of its own.
        if flow.response is None:
            self._arm(flow.client_conn)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow.client_conn)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if data.ignore_connection:
            self._disarm(data.context.client)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._disarm(flow.client_conn)

    def client_disconnected(self, client: connection.Client) -> None:
        self._disarm(client)

    def _arm(self, client: connection.Client) -> None:
        timeout_ms = ctx.options.wxgate_head_timeout_ms
        self._disarm(client)
        if timeout_ms <= 0:
            return
        loop = asyncio.get_running_loop()
        self._timers[client.id] = loop.call_later(timeout_ms / 1000, self._expire, client)

    def _disarm(self, client: connection.Client) -> None:
        timer = self._timers.pop(client.id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, client: connection.Client) -> None:
        if self._timers.pop(client.id, None) is None:
            return
        closed = close_client(client)
        events.logger().info(
            "idle_closed", client=str(client.peername[0]) if client.peername else None,
            timeout_ms=ctx.options.wxgate_head_timeout_ms, closed=closed,
        )
