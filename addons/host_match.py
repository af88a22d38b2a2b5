"""The host judged is the host connected (SPEC §4 `domain.host_mismatch`, §8).

Behind CONNECT the proxy connects to the CONNECT target, in absolute form to the URL's host;
the rules, and the certificate check, read the Host header / :authority and the SNI. A call
whose three disagree could pass the whitelist by naming a listed host while reaching another,
so it is refused before anything is connected. Runs before `resolve`, which then applies to
the judged name.
"""

from __future__ import annotations

from mitmproxy import http

from .policy.exposure import authority_host, host_mismatch
from .policy.rules import Violation
from .state import Runtime
from .verdict import enforce, fail_closed, judgeable


class HostMatch:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info = judgeable(flow)
        if info is None:
            return
        req = flow.request
        named = authority_host(req.host_header) if req.host_header else None
        detail = host_mismatch(req.host, named, flow.client_conn.sni)
        if detail:
            enforce(flow, Violation("domain.host_mismatch", detail, info.api), self.runtime)
