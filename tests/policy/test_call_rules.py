"""The stateless rules as pure functions of (call, config): each judges only the calls it
applies to, and CALL_RULES holds them in the order they are judged."""

from __future__ import annotations

from dataclasses import replace

import pytest
from wxgate.policy.call import Call
from wxgate.policy.call_rules import (
    CALL_RULES,
    host_match,
    referer_appid,
    referer_invalid,
    referer_rewritten,
    target_of,
    url,
    webview_navigation,
)
from wxgate.policy.config import AppConfig, Config, DomainEntry, parse_domain_entry
from wxgate.policy.urls import Target

APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"


def entry(raw: str) -> DomainEntry:
    parsed = parse_domain_entry(raw)
    assert parsed is not None
    return parsed


APP = AppConfig(APPID, domains={"request": (entry("https://api.example.com"),),
                                "connectSocket": (entry("wss://ws.example.com"),)},
                business_domains=(entry("https://h5.example.org"),))
CONFIG = Config(apps=(APP,))
ALLOWED = Call(method="GET", scheme="https", host_connected="api.example.com",
               host_named="api.example.com", host="api.example.com", sni="api.example.com",
               port=443, explicit_port=None, device="127.0.0.1", referer=REFERER,
               user_agent="MiniProgramEnv/android", platform="android", in_scope=True,
               app=APP, appid=APPID, app_version="0", api="request",
               api_reason="a wx.request call")


def rules_broken(call: Call) -> list[str]:
    return [v.rule for rule in CALL_RULES if (v := rule(call, CONFIG)) is not None]


def test_an_allowed_call_breaks_no_rule():
    assert rules_broken(ALLOWED) == []


@pytest.mark.parametrize(("changes", "detail"), [
    ({"host_connected": "10.0.0.8"}, "the proxy would connect to 10.0.0.8 but the Host "
                                     "header names api.example.com"),
    ({"sni": "evil.example.net"}, "the TLS SNI names evil.example.net"),
])
def test_the_host_connected_must_be_the_host_named_and_the_sni(changes: dict[str, str],
                                                                detail: str):
    violation = host_match(replace(ALLOWED, **changes), CONFIG)
    assert violation is not None and violation.rule == "domain.host_mismatch"
    assert detail in violation.detail


def test_a_host_named_in_another_spelling_is_the_same_host():
    assert host_match(replace(ALLOWED, host_named="API.Example.com"), CONFIG) is None


def test_an_unknown_app_is_refused_by_its_referer_and_judged_by_nothing_else():
    unknown = replace(ALLOWED, app=None, appid="wx1111111111111111", host="evil.example.net")
    assert rules_broken(unknown) == ["referer.appid_mismatch"]


@pytest.mark.parametrize(("referer", "expected"), [
    (REFERER, []),
    (None, ["referer.rewritten"]),
    (f"https://servicewechat.com/{APPID}/devtools/page-frame.html", ["referer.rewritten"]),
    ("https://example.org/", ["referer.invalid", "referer.rewritten"]),
    ("", ["referer.invalid", "referer.rewritten"]),
])
def test_the_referer_is_checked_then_made_canonical(referer: str | None,
                                                    expected: list[str]):
    assert rules_broken(replace(ALLOWED, referer=referer)) == expected


def test_media_and_web_view_loads_answer_to_no_list_and_keep_their_referer():
    for api in ("media", "webview"):
        load = replace(ALLOWED, api=api, host="evil.example.net", referer=None)
        assert rules_broken(load) == []


def test_the_url_rule_names_the_interface_it_judged():
    violation = url(replace(ALLOWED, host="evil.example.net"), CONFIG)
    assert violation is not None and violation.rule == "domain.not_listed"
    assert violation.detail.endswith("; a wx.request call")


def test_a_socket_is_judged_as_wss():
    socket = replace(ALLOWED, api="connectSocket", host="ws.example.com", scheme="https")
    assert target_of(socket) == Target("wss", "ws.example.com", 443, None)
    assert url(socket, CONFIG) is None
    assert url(replace(socket, scheme="http"), CONFIG) is not None


def test_a_web_view_navigation_answers_to_business_domains():
    navigation = replace(ALLOWED, api="webview", navigation=True, host="h5.example.org")
    assert webview_navigation(navigation, CONFIG) is None
    away = webview_navigation(replace(navigation, host="evil.example.net"), CONFIG)
    assert away is not None and away.rule == "webview.not_listed"
    assert webview_navigation(replace(navigation, navigation=False,
                                      host="evil.example.net"), CONFIG) is None


def test_the_rules_are_judged_host_first_then_referer_then_url():
    assert CALL_RULES == (host_match, referer_appid, referer_invalid, referer_rewritten, url,
                          webview_navigation)
    everything = replace(ALLOWED, host_connected="10.0.0.8", referer="x", scheme="http")
    assert rules_broken(everything) == ["domain.host_mismatch", "referer.invalid",
                                        "referer.rewritten", "scheme.insecure"]
