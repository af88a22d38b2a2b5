"""Connects configured names elsewhere (`resolve:`), keeping the Host header and SNI.

Rewriting `server.address` in `server_connect` would defeat connection reuse under
`connection_strategy=lazy` (mitmproxy reuses a connection only when its address
equals the request's), so the request itself is pointed at the target and the
name is given back to the TLS handshake as SNI.
"""

from __future__ import annotations

from mitmproxy import connection, http
from mitmproxy.net.http.url import hostport
from mitmproxy.proxy import server_hooks

from .policy.hosts import classify_host
from .raw_headers import host_header as raw_host_header
from .state import RESOLVED_FROM, Runtime
from .verdict import answered, info_of

Address = tuple[str, int]


class Resolve:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # (client peername, target) -> the name the client asked for. Keyed by peername,
        # not client id: client replay runs each flow on a copy with a new id.
        self._names: dict[tuple[Address, Address], str] = {}

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        table = self.runtime.config.resolve
        if not table or answered(flow):
            return
        req = flow.request
        port = req.port
        name = classify_host(info_of(flow).call.host or req.pretty_host).name
        dst = self.runtime.config.resolve_target(name, port)
        if dst is None:
            return
        flow.metadata[RESOLVED_FROM] = (name, port)
        # What `req.host, req.port = dst` followed by giving back the Host header does,
        # without the header writes (each setter rebuilds the Host header and the
        # authority; together they were the costliest step of an allowed call): the Host
        # header stays (HTTP/2: both it and :authority say what the client named), an
        # HTTP/1 absolute-form authority names the target.
        data = req.data
        data.host, data.port = dst
        if req.is_http2 or req.is_http3:
            host_header = raw_host_header(req)
            if host_header is not None:
                req.authority = host_header
                if "Host" in req.headers:
                    req.headers["Host"] = host_header
        elif data.authority:
            req.authority = hostport(req.scheme, *dst)
        self._names[(flow.client_conn.peername, dst)] = name

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is None:
            return
        name = self._names.get((data.client.peername, address))
        if name:
            data.server.sni = name

    def client_disconnected(self, client: connection.Client) -> None:
        for key in [k for k in self._names if k[0] == client.peername]:
            del self._names[key]
