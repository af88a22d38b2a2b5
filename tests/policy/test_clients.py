"""Tests for addons.policy.clients: Referer parsing, mini-program identification, platform."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wxgate.policy.clients import (
    Referer,
    canonical_referer,
    from_view_layer,
    is_miniprogram,
    is_webview_user_agent,
    parse_referer,
    platform_of,
)

APPID = "wx0123456789abcdef"
CANONICAL = f"https://servicewechat.com/{APPID}/0/page-frame.html"

# --------------------------------------------------------------------------- Referer

GOOD_REFERERS = [
    pytest.param(CANONICAL, Referer(APPID, "0"), id="canonical-develop"),
    pytest.param(f"https://servicewechat.com/{APPID}/devtools/page-frame.html",
                 Referer(APPID, "devtools"), id="devtools"),
    pytest.param(f"https://servicewechat.com/{APPID}/123/page-frame.html",
                 Referer(APPID, "123"), id="release-123"),
    pytest.param(f"  {CANONICAL}  ", Referer(APPID, "0"), id="surrounding-whitespace"),
    pytest.param("https://servicewechat.com/touristappid/devtools/page-frame.html",
                 Referer("touristappid", "devtools"), id="devtools-tourist-appid"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_REFERERS)
def test_page_frame_referer_gives_appid_and_version(value: str, expected: Referer) -> None:
    assert parse_referer(value) == expected


BAD_REFERERS = [
    pytest.param(None, id="absent"),
    pytest.param("", id="empty"),
    pytest.param(f"https://example.com/{APPID}/0/page-frame.html", id="wrong-host"),
    pytest.param(f"https://servicewechat.com.evil.net/{APPID}/0/page-frame.html",
                 id="host-suffix"),
    pytest.param(f"https://servicewechat.com:8443/{APPID}/0/page-frame.html", id="with-port"),
    pytest.param(f"http://servicewechat.com/{APPID}/0/page-frame.html", id="http-scheme"),
    pytest.param(f"https://servicewechat.com/x/{APPID}/0/page-frame.html", id="extra-path-front"),
    pytest.param(f"https://servicewechat.com/{APPID}/0/extra/page-frame.html",
                 id="extra-path-middle"),
    pytest.param(f"https://servicewechat.com/{APPID}/0/page-frame.html/x", id="extra-path-end"),
    pytest.param(f"https://servicewechat.com/{APPID}/0/", id="missing-page-frame"),
    pytest.param(f"https://servicewechat.com/{APPID}/0", id="missing-page-frame-no-slash"),
    pytest.param(f"https://servicewechat.com/{APPID}/0/index.html", id="other-page"),
    pytest.param(f"{CANONICAL}?from=share", id="query-string"),
    pytest.param(f"{CANONICAL}#top", id="fragment"),
    pytest.param(f"https://servicewechat.com/{APPID}/beta/page-frame.html", id="word-version"),
    pytest.param(f"https://servicewechat.com/{APPID}/1.2.3/page-frame.html",
                 id="dotted-version"),
    pytest.param(f"https://servicewechat.com/{APPID}//page-frame.html", id="empty-version"),
    pytest.param("https://servicewechat.com//0/page-frame.html", id="empty-appid"),
    pytest.param(f"https://servicewechat.com/{APPID}/page-frame.html", id="no-version"),
]


@pytest.mark.parametrize("value", BAD_REFERERS)
def test_anything_but_a_page_frame_referer_parses_to_none(value: str | None) -> None:
    assert parse_referer(value) is None


@pytest.mark.parametrize("version", ["0", "devtools", "1", "123"])
def test_canonical_referer_round_trips(version: str) -> None:
    value = canonical_referer(APPID, version)
    assert value == f"https://servicewechat.com/{APPID}/{version}/page-frame.html"
    assert parse_referer(value) == Referer(APPID, version)


@given(
    appid=st.from_regex(r"wx[0-9a-f]{16}", fullmatch=True),
    version=st.one_of(st.just("0"), st.just("devtools"), st.integers(0, 10**6).map(str)),
)
def test_canonical_referer_round_trips_for_any_appid_and_version(
    appid: str, version: str
) -> None:
    assert parse_referer(canonical_referer(appid, version)) == Referer(appid, version)


# --------------------------------------------------------------------------- identification

IOS_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2d) NetType/WIFI Language/zh_CN "
    "MiniProgramEnv/iOS"
)
ANDROID_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
    "MMWEBSDK/20231105 MMWEBID/1234 MicroMessenger/8.0.44.2502(0x28002C37) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64 MiniProgramEnv/android"
)
WINDOWS_UA = (
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/107.0.0.0 Safari/537.36 MicroMessenger/7.0.20.1781(0x6700143B) NetType/WIFI "
    "MiniProgramEnv/Windows WindowsWechat/WMPF WindowsWechat(0x63090819) XWEB/8555"
)
MAC_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "MicroMessenger/6.8.0(0x16080000) NetType/WIFI MiniProgramEnv/Mac MacWechat/WMPF "
    "MacWechat/3.8.6(0x13080610) XWEB/1191"
)
DEVTOOLS_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/107.0.0.0 Safari/537.36 wechatdevtools/1.06.2310080 MicroMessenger/8.0.5 "
    "Language/zh_CN webview/ sessionid/57"
)
DEVTOOLS_MAC_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/107.0.0.0 Safari/537.36 wechatdevtools/1.06.2310080 MicroMessenger/8.0.5 "
    "Language/zh_CN webview/"
)
WEBVIEW_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.44 miniProgram/"
    "wx0123456789abcdef"
)
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36"
)
WECHAT_BROWSER_UA = (  # an ordinary page inside WeChat: not a mini program
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2d) NetType/WIFI Language/zh_CN"
)

MP_LOWER_UA = (  # DevTools' service layer: "miniprogram" in lower case is not the marker
    "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/15.0 Mobile/15E148 Safari/604.1 desktopapp miniprogram port/25078"
)

MINIPROGRAM_CASES = [
    pytest.param(CANONICAL, BROWSER_UA, None, True, id="by-referer"),
    pytest.param(None, ANDROID_UA, None, True, id="by-ua-MiniProgramEnv"),
    pytest.param(None, IOS_UA, None, True, id="by-ua-MiniProgramEnv-ios"),
    pytest.param(None, WEBVIEW_UA, None, True, id="by-ua-miniProgram-webview"),
    pytest.param(None, BROWSER_UA, "1", True, id="by-xweb_xhr-1"),
    pytest.param(None, None, " 1 ", True, id="by-xweb_xhr-padded"),
    pytest.param(None, None, None, False, id="nothing"),
    pytest.param(None, BROWSER_UA, None, False, id="plain-browser"),
    pytest.param(None, WECHAT_BROWSER_UA, None, False, id="wechat-browser-page"),
    pytest.param("https://example.com/", BROWSER_UA, "0", False, id="other-referer-xhr-0"),
    pytest.param(f"{CANONICAL}?x=1", None, None, False, id="non-canonical-referer-only"),
    # iOS's WebKit cuts the Referer of an <image> load to the bare origin.
    pytest.param("https://servicewechat.com/", WECHAT_BROWSER_UA, None, True,
                 id="by-view-layer-origin"),
    pytest.param("https://servicewechat.com/other", WECHAT_BROWSER_UA, None, False,
                 id="other-servicewechat-page"),
    pytest.param(None, MP_LOWER_UA, None, False, id="lower-case-miniprogram-is-not-a-marker"),
]


@pytest.mark.parametrize(("referer", "user_agent", "xweb_xhr", "expected"), MINIPROGRAM_CASES)
def test_is_miniprogram_by_referer_ua_or_xweb_xhr(
    referer: str | None, user_agent: str | None, xweb_xhr: str | None, expected: bool
) -> None:
    assert is_miniprogram(referer, user_agent, xweb_xhr) is expected


@pytest.mark.parametrize(("referer", "expected"), [
    pytest.param(CANONICAL, True, id="page-frame"),
    pytest.param("https://servicewechat.com/", True, id="origin"),
    pytest.param("HTTPS://servicewechat.com", True, id="origin-no-slash-any-case"),
    pytest.param("https://servicewechat.com.evil.example/", False, id="lookalike"),
    pytest.param("https://h5.example.org/", False, id="web-page"),
    pytest.param("", False, id="empty"),
    pytest.param(None, False, id="absent"),
])
def test_from_view_layer_is_the_page_frame_or_its_bare_origin(
        referer: str | None, expected: bool) -> None:
    assert from_view_layer(referer) is expected


@pytest.mark.parametrize(("user_agent", "expected"), [
    pytest.param(WEBVIEW_UA, True, id="miniProgram/appid"),
    pytest.param(WINDOWS_UA + " miniProgram/wx0123456789abcdef", True,
                 id="windows-keeps-both-markers"),
    pytest.param(ANDROID_UA, False, id="MiniProgramEnv-is-the-mini-program"),
    pytest.param(MP_LOWER_UA, False, id="lower-case"),
    pytest.param(None, False, id="absent"),
])
def test_is_webview_user_agent(user_agent: str | None, expected: bool) -> None:
    assert is_webview_user_agent(user_agent) is expected


# --------------------------------------------------------------------------- platform

PLATFORM_CASES = [
    pytest.param(IOS_UA, "ios", id="iphone-MiniProgramEnv-iOS"),
    pytest.param(ANDROID_UA, "android", id="android-MiniProgramEnv-android"),
    pytest.param(WINDOWS_UA, "windows", id="windows-WindowsWechat"),
    pytest.param(MAC_UA, "macos", id="mac-MacWechat"),
    pytest.param(DEVTOOLS_UA, "devtools", id="devtools-on-windows"),
    pytest.param(DEVTOOLS_MAC_UA, "devtools", id="devtools-on-mac"),
    pytest.param(WECHAT_BROWSER_UA, "ios", id="iphone-without-env-marker"),
    pytest.param("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) MicroMessenger/8.0.40",
                 "ios", id="ipad"),
    pytest.param("MINIPROGRAMENV/ANDROID", "android", id="case-insensitive"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="absent"),
    pytest.param("curl/8.4.0", None, id="unknown"),
]


@pytest.mark.parametrize(("user_agent", "expected"), PLATFORM_CASES)
def test_platform_of_user_agent(user_agent: str | None, expected: str | None) -> None:
    assert platform_of(user_agent) == expected
