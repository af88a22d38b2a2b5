"""Decides whose call a flow is: in scope or not, which app, which wx API (or media, or a
web-view page's load), which platform.

Runs first among the judging addons; the others read its verdict from flow.metadata.
"""

from __future__ import annotations

from mitmproxy import ctx, http

from .control_api import CONTROL_HOST
from .policy.calls import RequestHead, classify
from .policy.clients import is_miniprogram, parse_referer, platform_of
from .policy.config import AppConfig
from .state import Runtime
from .verdict import answered, fail_closed, info_of, publish


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
        host = req.pretty_host.lower()
        if host in (onboarding_host(), CONTROL_HOST):
            return
        info = info_of(flow)
        head = RequestHead.of(req.method, req.headers.fields)
        info.platform = platform_of(head.user_agent)
        config = self.runtime.config
        if config.scope != "all" and not is_miniprogram(
            head.referer, head.user_agent, req.headers.get("xweb_xhr")
        ):
            return
        parsed = parse_referer(head.referer)
        app = config.app(parsed.appid) if parsed else self.runtime.default_app()
        info.app = app
        if app is None:
            if not (parsed and config.apps):
                return
            # An unknown appid stays in scope, judged against no whitelist:
            # RefererGuard refuses it.
            app = AppConfig(parsed.appid)
        info.in_scope = True
        info.appid = app.appid
        info.app_version = parsed.version if parsed else app.version
        # A wx API, media the view layer loads, or a web-view page's load (SPEC §4).
        interface = classify(app, host, head)
        info.api, info.api_reason = interface.api, interface.reason
        publish(flow)
