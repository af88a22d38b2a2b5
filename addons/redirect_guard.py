"""Redirects re-checked: the client checks every hop against the whitelist of the
interface and fails before it sends the next request, so a 3xx whose Location
leaves the list is not delivered (`domain.redirect_not_listed`).

Judged in `response`: the 3xx is complete then, and a kill or a replaced response
there is what the client gets instead.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from mitmproxy import http

from .policy.rules import APIS, Violation
from .policy.urls import Target, judge_target
from .state import Runtime
from .verdict import enforce, fail_closed, info_of

REDIRECTS = frozenset({301, 302, 303, 307, 308})


def redirect_target(request_url: str, location: str) -> tuple[str, Target] | None:
    """The absolute URL a Location points to (relative ones resolved), as a Target."""
    url = urljoin(request_url, location.strip())
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None
    try:
        explicit = parts.port
    except ValueError:
        explicit = None
    default = 443 if parts.scheme in ("https", "wss") else 80
    return url, Target(parts.scheme, parts.hostname, explicit or default, explicit)


class RedirectGuard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def response(self, flow: http.HTTPFlow) -> None:
        info = info_of(flow)
        response = flow.response
        # A web-view follows its redirects as navigations, judged when they are made.
        if (not info.call.in_scope or info.call.api not in APIS or info.decision == "blocked"
                or response is None
                or response.status_code not in REDIRECTS or "location" not in response.headers
                or flow.metadata.get("wxgate_synthetic")):
            return
        app = info.call.app
        found = redirect_target(flow.request.pretty_url, response.headers["location"])
        if app is None or found is None:
            return
        url, target = found
        config = self.runtime.config
        hop = judge_target(target, info.call.api, app, config.rules, config.allow_lan_ip)
        if hop is None:
            return
        violation = Violation(
            "domain.redirect_not_listed",
            f"{response.status_code} redirect to {url}, which the client refuses: {hop.detail}",
            info.call.api, extra={"location": url, "hop_rule": hop.rule},
        )
        enforce(flow, violation, self.runtime)
