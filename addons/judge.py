"""Runs the stateless rules (`policy/call_rules.py`: host match, Referer, URL, web-view
navigation) on each identified call, in their order, and acts on what they find: the
verdict blocks or reports the call, and a `referer.rewritten` replaces the Referer header.

Judged in `requestheaders`, not `request`: a streamed body connects upstream before
`request` runs, and everything these rules need is in the headers (the Call).
"""

from __future__ import annotations

from mitmproxy import http

from .policy.call import Call
from .policy.call_rules import CALL_RULES
from .policy.clients import canonical_referer
from .policy.config import Config
from .state import REFERER_SENT, Runtime
from .verdict import answered, enforce, fail_closed, info_of

# Calls remembered as breaking no rule; the oldest makes room past this.
MAX_CLEAN_CALLS = 1024


class Judge:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Calls that broke no rule under `_clean_config`, by identity (each held, so its id
        # stays its own). `identify` hands a phone's repeated calls one shared Call, and
        # the rules are pure functions of (call, config): the answer can't change.
        self._clean: dict[int, Call] = {}
        self._clean_config: Config | None = None

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = info_of(flow).call
        if not call.in_scope or answered(flow):
            return
        config = self.runtime.config
        if config is not self._clean_config:
            self._clean.clear()
            self._clean_config = config
        elif self._clean.get(id(call)) is call:
            return
        clean = True
        for rule in CALL_RULES:
            violation = rule(call, config)
            if violation is None:
                continue
            clean = False
            if violation.rule == "referer.rewritten" and call.app is not None:
                headers = flow.request.headers
                # A saved flow holds the request as rewritten; an audit of it needs the
                # header the client sent.
                flow.metadata.setdefault(REFERER_SENT, headers.get("Referer"))
                headers["Referer"] = canonical_referer(call.app.appid, call.app.version)
            # A rule is pure: only a verdict acted upon can end the judging.
            if enforce(flow, violation, self.runtime) or answered(flow):
                return
        if clean:
            if len(self._clean) >= MAX_CLEAN_CALLS:
                del self._clean[next(iter(self._clean))]
            self._clean[id(call)] = call
