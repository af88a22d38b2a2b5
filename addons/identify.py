"""Decides whose call a flow is, once: builds its Call (`policy/call.py`): in scope or not,
which app, which wx API (or media, or a web-view page's load), which platform, and the
hosts, ports and headers the rules read.

Runs first among the judging addons; the others read the Call from `info_of(flow).call`.
"""

from __future__ import annotations

from mitmproxy import ctx, http
from mitmproxy.net.http.url import parse_authority

from .control_api import CONTROL_HOST
from .policy.call import identify
from .policy.calls import RequestHead
from .state import Runtime, device_of_flow
from .verdict import answered, client_port, fail_closed, info_of, publish


def onboarding_host() -> str:
    # The option belongs to mitmproxy's onboarding addon, which a bare test master lacks.
    return str(getattr(ctx.options, "onboarding_host", "mitm.it"))


class IdentifyApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.runtime.flows += 1
        if answered(flow):
            return
        req = flow.request
        host_header = req.host_header
        # `req.pretty_host`, without looking the header up twice.
        host = parse_authority(host_header, check=False)[0] if host_header else req.host
        if host.lower() in (onboarding_host(), CONTROL_HOST):
            return
        info = info_of(flow)
        info.call = call = identify(
            RequestHead.of(req.method, req.headers.fields), scheme=req.scheme,
            host_connected=req.host, host=host, host_header=host_header,
            authority=req.authority, sni=flow.client_conn.sni, port=client_port(flow),
            device=device_of_flow(flow), config=self.runtime.config)
        if call.in_scope:
            publish(flow)
