"""Decides whose call a flow is, once: builds its Call (`policy/call.py`): in scope or not,
which app, which wx API (or media, or a web-view page's load), which platform, and the
hosts, ports and headers the rules read.

Runs first among the judging addons; the others read the Call from `info_of(flow).call`.
"""

from __future__ import annotations

import functools
from collections.abc import Set

from mitmproxy import connection, ctx, http
from mitmproxy.net.http.url import parse_authority

from .control_api import CONTROL_HOST
from .policy.call import Call, identify
from .policy.calls import RequestHead
from .policy.config import Config
from .raw_headers import host_header as raw_host_header
from .state import RESOLVED_FROM, Runtime, device_of_flow
from .verdict import answered, client_port, fail_closed, publish, start_info


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


# A request with more header fields than this is identified afresh, never remembered.
_MAX_REMEMBERED_FIELDS = 64


class IdentifyApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Read on the first call after the option changes: an option lookup per call cost
        # as much as a rule.
        self._onboarding: str | None = None
        # Client connection id -> (what its last call was identified from, the config,
        # the Call). A phone's calls on one keep-alive connection mostly repeat their
        # request head, header for header: comparing it costs a fraction of reading
        # every header again (11 -> 4 us a call in bench/hooks.py).
        self._last: dict[str, tuple[tuple[object, ...], Config, Call]] = {}

    def configure(self, updated: Set[str]) -> None:
        if "onboarding_host" in updated:
            self._onboarding = None
            self._last.clear()

    def client_disconnected(self, client: connection.Client) -> None:
        self._last.pop(client.id, None)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.runtime.flows += 1
        info = start_info(flow)
        if answered(flow, info):
            return
        req = flow.request
        data = req.data
        config = self.runtime.config
        client = flow.client_conn
        # Everything the Call is made of: the connection gives the device.
        made_of = (data.headers.fields, data.method, data.scheme, data.host, data.port,
                   data.authority, data.http_version, client.sni,
                   flow.metadata.get(RESOLVED_FROM))
        last = self._last.get(client.id)
        if last is not None and last[0] == made_of and last[1] is config:
            call = last[2]
        else:
            host_header = raw_host_header(req)
            # `req.pretty_host`, without looking the header up twice.
            host = named_host(host_header) if host_header else req.host
            if self._onboarding is None:
                self._onboarding = onboarding_host()
            if host.lower() in (self._onboarding, CONTROL_HOST):
                return
            call = identify(
                RequestHead.of(req.method, data.headers.fields), scheme=req.scheme,
                host_connected=req.host, host=host, host_header=host_header,
                authority=req.authority, sni=client.sni, port=client_port(flow),
                device=device_of_flow(flow), config=config)
            if len(data.headers.fields) <= _MAX_REMEMBERED_FIELDS:
                self._last[client.id] = (made_of, config, call)
        info.call = call
        if call.in_scope:
            publish(flow, info)
