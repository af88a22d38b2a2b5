"""Scheme, whitelist, IP, localhost, port and forbidden-host rules for wx API calls, and
business_domains for web-view navigations, judged on the headers.

Media the view layer loads and what a web-view page loads are judged by no list: only the
certificate rules (TlsAudit) apply to them.

Judged in `requestheaders`, not `request`: a streamed body connects upstream
before `request` runs, and everything these rules need is in the headers.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mitmproxy import http

from .policy.calls import PAGE_LOADS, WEBVIEW, RequestHead, is_navigation
from .policy.urls import Target, judge_navigation, judge_target
from .state import Runtime
from .verdict import client_port, enforce, fail_closed, judgeable

_PORT_RE = re.compile(r":(\d{1,5})$")


def explicit_port(authority: str) -> int | None:
    """The port written in a Host header or authority ("h", "h:443", "[::1]:8443")."""
    match = _PORT_RE.search(authority.strip())
    if not match or (authority.count(":") > 1 and "]" not in authority):
        return None  # a bare IPv6 address, not a port
    return int(match[1])


def target_of(flow: http.HTTPFlow, api: str) -> Target:
    req = flow.request
    scheme = req.scheme
    if api == "connectSocket":
        scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    # Behind CONNECT only the Host header shows an explicit :443.
    written = explicit_port(req.host_header or "") or explicit_port(req.authority or "")
    return Target(scheme, req.pretty_host, client_port(flow), written)


class DomainGuard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info = judgeable(flow)
        if info is None or info.app is None:
            return
        if info.api in PAGE_LOADS:
            req = flow.request
            if info.api == WEBVIEW and is_navigation(RequestHead.of(req.method,
                                                                    req.headers.fields)):
                violation = judge_navigation(target_of(flow, info.api), info.app)
                if violation:
                    enforce(flow, violation, self.runtime)
            return
        config = self.runtime.config
        violation = judge_target(
            target_of(flow, info.api), info.api, info.app, config.rules, config.allow_lan_ip
        )
        if violation:
            if info.api_reason:
                violation = replace(violation, detail=f"{violation.detail}; {info.api_reason}")
            enforce(flow, violation, self.runtime)
