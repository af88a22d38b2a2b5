"""Never carries a client that is not this machine to this machine's own services (SPEC §8).

A phone on the office Wi-Fi that names 127.0.0.1, localhost, a link-local address or one of
the laptop's own addresses (any spelling, by CONNECT, absolute-form URL or Host) would
otherwise reach the laptop's database, admin pages, the control port or mitmweb as a
loopback caller. Judged on the host the proxy would connect to, before anything is
connected; a name is resolved at connect time (`server_connect`) and refused there too when
it points at this machine. `resolve` targets are always allowed; `local_destinations: true`
lifts the rule for LAN clients. The control port and mitmweb are refused to every client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import Set

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import server_hooks

from . import events
from .netinfo import lan_addresses
from .policy.exposure import is_local_ip, is_loopback_peer, local_destination, peer_ip
from .policy.hosts import IPAddress, classify_host
from .state import Runtime

# What a name resolved to, kept briefly: a client talks to a handful of hosts.
DNS_CACHE_S = 30.0
DNS_CACHE_MAX = 4096


class LocalDestinations:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.own: set[IPAddress] = set()
        self._dns: dict[str, tuple[float, bool]] = {}
        # Read again after the options change: a call to a local address (a dev server on
        # this machine) asked the options twice.
        self._ports: set[int] | None = None

    def configure(self, updated: Set[str]) -> None:
        if updated & {"wxgate_control_port", "web_port"}:
            self._ports = None

    def running(self) -> None:
        self.own.update(ipaddress.ip_address(a) for a in lan_addresses())

    def client_connected(self, client: connection.Client) -> None:
        # The address a client reached us on is one of ours, whatever the interface list says.
        if client.sockname and (ip := peer_ip(str(client.sockname[0]))) is not None:
            self.own.add(ip)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._judge(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._judge(flow)

    def _judge(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        try:
            reason = self._reason(flow.client_conn, flow.request.host, flow.request.port)
        except Exception as exc:  # noqa: BLE001 - fail closed
            reason = f"wxgate failed while judging the destination ({type(exc).__name__})"
        if reason is None:
            return
        client = _client_address(flow.client_conn)
        events.logger().warning(
            "refused", reason="local_destination", client=client, method=flow.request.method,
            host=flow.request.host, port=flow.request.port, flow_id=flow.id, detail=reason,
        )
        flow.metadata["wxgate_refused"] = "local_destination"
        flow.request.stream = False
        flow.response = http.Response.make(
            403, json.dumps({"error": reason, "reason": "local_destination"}).encode(),
            {"Content-Type": "application/json", "Connection": "close"},
        )

    def _reason(self, client: connection.Client, host: str, port: int) -> str | None:
        """Why this client may not be carried to host:port, or None."""
        local = local_destination(host, self.own)
        if local and port in self._own_ports():
            return f"{local}, and port {port} is wxgate's control API or mitmweb"
        if not local or self._exempt(client, host, port):
            return None
        return (f"{local}; a client on another machine is never carried to this machine's "
                "own services (local_destinations: false)")

    def _exempt(self, client: connection.Client, host: str, port: int) -> bool:
        if is_loopback_peer(_client_address(client)) or self.runtime.config.local_destinations:
            return True
        config = self.runtime.config
        # `resolve` sources and targets are the operator's own choice of where to connect.
        return config.resolve_target(host, port) is not None or \
            (host, port) in config.resolve.values()

    def _own_ports(self) -> set[int]:
        if self._ports is None:
            ports = {int(getattr(ctx.options, "wxgate_control_port", 0) or 0)}
            if "web_port" in ctx.options:
                ports.add(int(ctx.options.web_port))
            ports.discard(0)
            self._ports = ports
        return self._ports

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """The last word before a socket opens: also names that resolve to this machine."""
        if data.server.address is None or data.server.error:
            return
        host, port = data.server.address
        try:
            reason = self._reason(data.client, host, port)
            if reason is None and not self._exempt(data.client, host, port) and \
                    classify_host(host).ip is None and await self._resolves_local(host):
                reason = f"{host} resolves to an address of this machine"
        except Exception as exc:  # noqa: BLE001 - fail closed
            reason = f"wxgate failed while judging the destination ({type(exc).__name__})"
        if reason is None:
            return
        events.logger().warning(
            "refused", reason="local_destination", client=_client_address(data.client),
            host=host, port=port, detail=reason,
        )
        data.server.error = f"wxgate refused the connection: {reason}"

    async def _resolves_local(self, host: str) -> bool:
        now = time.monotonic()
        cached = self._dns.get(host)
        if cached and now - cached[0] < DNS_CACHE_S:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                                 type=socket.SOCK_STREAM)
        except OSError:
            return False  # mitmproxy will fail to connect as well
        local = any(
            (ip := peer_ip(str(info[4][0]))) is not None and is_local_ip(ip, self.own)
            for info in infos
        )
        if len(self._dns) >= DNS_CACHE_MAX:
            self._dns.clear()
        self._dns[host] = (now, local)
        return local


def _client_address(client: connection.Client) -> str:
    return str(client.peername[0]) if client.peername else ""
