"""The stateless rules: each a pure function of (call, config) that returns the Violation
the call breaks, or None. `CALL_RULES` holds them in the order they are judged; the Judge
addon runs them on every identified call and stops at the first one that blocks it.

Which calls a rule applies to is the rule's own business: the Referer rules judge wx API
calls only; media and a web-view page's loads answer to no list, a web-view navigation to
business_domains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .call import Call
from .calls import PAGE_LOADS, WEBVIEW
from .clients import canonical_referer, parse_referer
from .config import Config
from .exposure import host_mismatch
from .rules import APIS, Violation
from .urls import Target, judge_navigation, judge_target

CallRule = Callable[[Call, Config], Violation | None]


def target_of(call: Call) -> Target:
    """Where the call goes, as the mini program wrote it."""
    scheme = call.scheme
    if call.api == "connectSocket":
        scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return Target(scheme, call.host, call.port, call.explicit_port)


def host_match(call: Call, config: Config) -> Violation | None:
    """`domain.host_mismatch`: the host connected is the host named (and the SNI), so that
    naming a listed host cannot reach another (SPEC §4, §8)."""
    detail = host_mismatch(call.host_connected, call.host_named, call.sni)
    return Violation("domain.host_mismatch", detail, call.api) if detail else None


def referer_appid(call: Call, config: Config) -> Violation | None:
    """`referer.appid_mismatch`: a wx API call whose Referer names an app not configured."""
    if call.api not in APIS or call.app is not None:
        return None
    known = ", ".join(a.appid for a in config.apps)
    return Violation("referer.appid_mismatch",
                     f"Referer names {call.appid}, which is not a configured app ({known})",
                     call.api)


def referer_invalid(call: Call, config: Config) -> Violation | None:
    """`referer.invalid`: a wx API call that sent a Referer other than a page-frame URL."""
    if call.api not in APIS or call.app is None or call.referer is None:
        return None
    if call.referer == canonical_referer(call.app.appid, call.app.version):
        return None
    if parse_referer(call.referer) is not None:
        return None
    return Violation("referer.invalid",
                     f"Referer {call.referer!r} is not https://servicewechat.com/{{appid}}"
                     "/{version}/page-frame.html", call.api)


def referer_rewritten(call: Call, config: Config) -> Violation | None:
    """`referer.rewritten`: the backend must see the Referer production sends, so any other
    is replaced by the canonical one (the Judge addon rewrites the header)."""
    if call.api not in APIS or call.app is None:
        return None
    canonical = canonical_referer(call.app.appid, call.app.version)
    if call.referer == canonical:
        return None
    why = "none was sent" if call.referer is None else f"the client sent {call.referer!r}"
    return Violation("referer.rewritten", f"Referer set to {canonical} ({why})", call.api)


def url(call: Call, config: Config) -> Violation | None:
    """Scheme, whitelist, IP, localhost, port and forbidden host of a wx API call."""
    if call.app is None or call.api in PAGE_LOADS:
        return None
    violation = judge_target(target_of(call), call.api, call.app, config.rules,
                             config.allow_lan_ip)
    if violation and call.api_reason:
        violation = replace(violation, detail=f"{violation.detail}; {call.api_reason}")
    return violation


def webview_navigation(call: Call, config: Config) -> Violation | None:
    """`webview.not_listed`: a web-view navigation off the app's business_domains."""
    if call.app is None or call.api != WEBVIEW or not call.navigation:
        return None
    return judge_navigation(target_of(call), call.app)


# The order they are judged in: the host first (a mismatch is judged as neither name), then
# the Referer (a call of an unknown app is refused before its URL means anything), then
# the URL.
CALL_RULES: tuple[CallRule, ...] = (
    host_match,
    referer_appid,
    referer_invalid,
    referer_rewritten,
    url,
    webview_navigation,
)
