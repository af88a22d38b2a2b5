"""Decides whose call a flow is, once: builds its Call (`policy/call.py`): in scope or not,
which app, which wx API (or media, or a web-view page's load), which platform, and the
hosts, ports and headers the rules read.

Runs first among the judging addons; the others read the Call from `info_of(flow).call`.
"""

from __future__ import annotations

import functools
from collections.abc import Set

from mitmproxy import ctx, http
from mitmproxy.net.http.url import parse_authority

from .control_api import CONTROL_HOST
from .policy.call import identify
from .policy.calls import RequestHead
from .raw_headers import host_header as raw_host_header
from .state import Runtime, device_of_flow
from .verdict import answered, client_port, fail_closed, info_of, publish


def onboarding_host() -> str:
    # The option belongs to mitmproxy's onboarding addon, which a bare test master lacks.
    return str(getattr(ctx.options, "onboarding_host", "mitm.it"))


# The longest Host header whose host is remembered: a DNS name and a port.
_MAX_AUTHORITY = 300


@functools.lru_cache(maxsize=1024)
def _authority_host(host_header: str) -> str:
    # mitmproxy's IDNA check of the name cost more than any rule; a phone names a few hosts.
    return parse_authority(host_header, check=False)[0]


def named_host(host_header: str) -> str:
    """`req.pretty_host` of a request with this Host header (or :authority)."""
    if len(host_header) > _MAX_AUTHORITY:
        return parse_authority(host_header, check=False)[0]
    return _authority_host(host_header)


class IdentifyApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Read on the first call after the option changes: an option lookup per call cost
        # as much as a rule.
        self._onboarding: str | None = None

    def configure(self, updated: Set[str]) -> None:
        if "onboarding_host" in updated:
            self._onboarding = None

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.runtime.flows += 1
        if answered(flow):
            return
        req = flow.request
        host_header = raw_host_header(req)
        # `req.pretty_host`, without looking the header up twice.
        host = named_host(host_header) if host_header else req.host
        if self._onboarding is None:
            self._onboarding = onboarding_host()
        if host.lower() in (self._onboarding, CONTROL_HOST):
            return
        info = info_of(flow)
        info.call = call = identify(
            RequestHead.of(req.method, req.headers.fields), scheme=req.scheme,
            host_connected=req.host, host=host, host_header=host_header,
            authority=req.authority, sni=flow.client_conn.sni, port=client_port(flow),
            device=device_of_flow(flow), config=self.runtime.config)
        if call.in_scope:
            publish(flow)
