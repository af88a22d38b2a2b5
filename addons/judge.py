"""Runs the stateless rules (`policy/call_rules.py`: host match, Referer, URL, web-view
navigation) on each identified call, in their order, and acts on what they find: the
verdict blocks or reports the call, and a `referer.rewritten` replaces the Referer header.

Judged in `requestheaders`, not `request`: a streamed body connects upstream before
`request` runs, and everything these rules need is in the headers (the Call).
"""

from __future__ import annotations

from mitmproxy import http

from .policy.call_rules import CALL_RULES
from .policy.clients import canonical_referer
from .state import Runtime
from .verdict import answered, enforce, fail_closed, info_of


class Judge:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = info_of(flow).call
        if not call.in_scope or answered(flow):
            return
        config = self.runtime.config
        for rule in CALL_RULES:
            violation = rule(call, config)
            if violation is None:
                continue
            if violation.rule == "referer.rewritten" and call.app is not None:
                flow.request.headers["Referer"] = canonical_referer(call.app.appid,
                                                                    call.app.version)
            # A rule is pure: only a verdict acted upon can end the judging.
            if enforce(flow, violation, self.runtime) or answered(flow):
                return
