"""The Call: every fact the rules read, taken from the request once. Which hosts, ports and
headers it holds, and whose call it is (in scope, app, interface, platform)."""

from __future__ import annotations

from typing import Any

import pytest
from wxgate.policy.call import Call, authority_host, explicit_port, identify
from wxgate.policy.calls import RequestHead
from wxgate.policy.config import AppConfig, Config, DomainEntry, parse_domain_entry

APPID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APPID}/0/page-frame.html"
ANDROID = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"


def entry(raw: str) -> DomainEntry:
    parsed = parse_domain_entry(raw)
    assert parsed is not None
    return parsed


APP = AppConfig(APPID, domains={"request": (entry("https://api.example.com"),),
                                "downloadFile": (entry("https://cdn.example.com"),)})
CONFIG = Config(apps=(APP,))


def call(headers: dict[str, str] | None = None, *, method: str = "GET",
         config: Config = CONFIG, **where: Any) -> Call:
    facts: dict[str, Any] = {
        "scheme": "https", "host_connected": "api.example.com", "host": "api.example.com",
        "host_header": "api.example.com", "authority": None, "sni": "api.example.com",
        "port": 443, "device": "192.168.1.23", **where}
    sent = {"Referer": REFERER, "User-Agent": ANDROID} if headers is None else headers
    return identify(RequestHead.of(method, sent.items()), config=config, **facts)


def test_a_mini_programs_call_is_identified_once_with_everything_the_rules_read():
    identified = call()
    assert identified == Call(
        method="GET", scheme="https", host_connected="api.example.com",
        host_named="api.example.com", host="api.example.com", sni="api.example.com",
        port=443, explicit_port=None, device="192.168.1.23", referer=REFERER,
        user_agent=ANDROID, platform="android", in_scope=True, app=APP, appid=APPID,
        app_version="0", api="request", api_reason="a wx.request call", navigation=False)


def test_the_host_connected_and_the_host_named_are_kept_apart():
    identified = call(host_connected="10.0.0.8", host_header="api.example.com:443",
                      host="api.example.com")
    assert (identified.host_connected, identified.host_named, identified.explicit_port) == (
        "10.0.0.8", "api.example.com", 443)


def test_a_call_without_mini_program_markers_is_out_of_scope_but_keeps_its_platform():
    identified = call({"User-Agent": "Mozilla/5.0 (iPhone)"})
    assert (identified.in_scope, identified.app, identified.api, identified.platform) == (
        False, None, "other", "ios")


def test_every_call_is_in_scope_under_scope_all():
    identified = call({"User-Agent": "curl/8"}, config=Config(apps=(APP,), scope="all"))
    assert (identified.in_scope, identified.appid, identified.app_version) == (
        True, APPID, "0")


def test_an_unknown_appid_stays_in_scope_without_an_app():
    other = "https://servicewechat.com/wx1111111111111111/3/page-frame.html"
    identified = call({"Referer": other, "User-Agent": ANDROID})
    assert (identified.in_scope, identified.app, identified.appid,
            identified.app_version) == (True, None, "wx1111111111111111", "3")


def test_no_referer_is_none_and_an_empty_one_is_kept():
    assert call({"User-Agent": ANDROID}).referer is None
    assert call({"User-Agent": ANDROID, "Referer": ""}).referer == ""


def test_the_interface_comes_from_the_headers():
    upgrade = call({"Referer": REFERER, "User-Agent": ANDROID, "Upgrade": "websocket"})
    assert upgrade.api == "connectSocket"
    download = call(host="cdn.example.com", host_header="cdn.example.com")
    assert download.api == "downloadFile"


@pytest.mark.parametrize(("authority", "host", "port"), [
    ("api.example.com", "api.example.com", None),
    ("api.example.com:8443", "api.example.com", 8443),
    ("[::1]:8443", "::1", 8443),
    ("::1", "::1", None),
])
def test_host_and_port_of_an_authority(authority: str, host: str, port: int | None):
    assert (authority_host(authority), explicit_port(authority)) == (host, port)


def test_a_repeated_call_gets_the_same_call_until_the_config_changes():
    first, again = call(), call()
    assert again is first
    other = Config(apps=(APP,))
    assert call(config=other) == first and call(config=other) is not first


def test_a_call_with_a_huge_header_is_identified_alike_but_not_remembered():
    sent = {"Referer": REFERER, "User-Agent": ANDROID + " x" * 4096}
    first, again = call(sent), call(sent)
    assert first == again and first is not again and first.platform == "android"
