"""The fixed Referer: verified against the page-frame URL, then made canonical.

The backend must see exactly what production sends:
`https://servicewechat.com/{appid}/{version}/page-frame.html` with the configured
app's appid and version, whatever the client (DevTools, a test script) sent.
"""

from __future__ import annotations

from mitmproxy import http

from .policy.clients import canonical_referer, parse_referer
from .policy.rules import APIS, Violation
from .state import Runtime
from .verdict import enforce, fail_closed, judgeable


class RefererGuard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info = judgeable(flow)
        if info is None or info.api not in APIS:  # media and web-view loads: not wx calls
            return
        app = info.app
        sent = flow.request.headers.get("referer")
        if app is None:
            known = ", ".join(a.appid for a in self.runtime.config.apps)
            enforce(flow, Violation(
                "referer.appid_mismatch",
                f"Referer names {info.appid}, which is not a configured app ({known})",
                info.api,
            ), self.runtime)
            return
        canonical = canonical_referer(app.appid, app.version)
        if sent == canonical:
            return
        if sent is not None and parse_referer(sent) is None:
            enforce(flow, Violation(
                "referer.invalid",
                f"Referer {sent!r} is not https://servicewechat.com/{{appid}}/{{version}}"
                "/page-frame.html", info.api,
            ), self.runtime)
        flow.request.headers["Referer"] = canonical
        why = "none was sent" if sent is None else f"the client sent {sent!r}"
        enforce(flow, Violation(
            "referer.rewritten", f"Referer set to {canonical} ({why})", info.api,
        ), self.runtime)
