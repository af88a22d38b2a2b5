"""Tests for addons.policy.calls: every engine's header sets (tests/engine_headers.yaml)
classified as the wx API, media or web-view load they are; a wx.request never taken for
media; WebSocket upgrades recognised as mitmproxy recognises them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wxgate.policy.calls import (
    MEDIA,
    PAGE_LOADS,
    WEBVIEW,
    RequestHead,
    classify,
    is_navigation,
    is_websocket_upgrade,
    non_business_domain_page,
)
from wxgate.policy.clients import is_miniprogram, platform_of
from wxgate.policy.config import AppConfig, DomainEntry, parse_domain_entry
from wxgate.policy.rules import APIS
from wxgate.policy.urls import Interface

from ..engine_headers import MEDIA_KINDS, WX_APIS, HeaderSet, engines, header_sets, sets_of

APPID = "wx0123456789abcdef"


def _app() -> AppConfig:
    def entries(*raws: str) -> tuple[DomainEntry, ...]:
        return tuple(e for e in map(parse_domain_entry, raws) if e is not None)

    return AppConfig(APPID, domains={
        "request": entries("https://api.example.com"),
        "uploadFile": entries("https://upload.example.com"),
        "downloadFile": entries("https://cdn.example.com"),
        "connectSocket": entries("wss://ws.example.com"),
    }, business_domains=entries("https://h5.example.org"))


APP = _app()
ALL_SETS = [s.param() for s in header_sets()]


def host_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]


def classify_set(header_set: HeaderSet, extra: dict[str, str] | None = None) -> Interface:
    headers = {**header_set.headers, **(extra or {})}
    return classify(APP, host_of(header_set.url), RequestHead.of(header_set.method,
                                                                 headers.items()))


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("header_set", ALL_SETS)
def test_each_engines_header_set_is_classified_as_what_it_is(header_set: HeaderSet) -> None:
    interface = classify_set(header_set)
    assert (interface.api, interface.navigation) == (header_set.api, header_set.navigation), \
        interface.reason
    assert interface.reason.strip()


@pytest.mark.parametrize("header_set", ALL_SETS)
def test_each_reason_names_the_kind_of_call_first(header_set: HeaderSet) -> None:
    """"a wx.request call", "media the view layer loads (...)": the kind, then the clue."""
    reason = classify_set(header_set).reason
    assert reason.startswith(("a ", "an ", "media the view layer loads")), reason
    assert "plain HTTP" not in reason and ", so " not in reason


@pytest.mark.parametrize("header_set", ALL_SETS)
def test_each_header_set_is_in_scope_as_the_data_says(header_set: HeaderSet) -> None:
    headers = {k.lower(): v for k, v in header_set.headers.items()}
    assert is_miniprogram(headers.get("referer"), headers.get("user-agent"),
                          headers.get("xweb_xhr")) is header_set.in_scope


ENGINE_PLATFORM = {"android_xweb": "android", "ios_wkwebview": "ios", "ios_pre_16_4": "ios",
                   "windows_client": "windows", "devtools": "devtools"}


@pytest.mark.parametrize("header_set", ALL_SETS)
def test_each_header_set_names_its_engines_platform(header_set: HeaderSet) -> None:
    user_agent = {k.lower(): v for k, v in header_set.headers.items()}["user-agent"]
    assert platform_of(user_agent) == ENGINE_PLATFORM[header_set.engine]


def test_every_engine_has_every_kind_of_load() -> None:
    wanted = {*WX_APIS, *MEDIA_KINDS, "webview.navigation", "webview.xhr"}
    for engine in engines():
        kinds = {s.kind for s in header_sets() if s.engine == engine}
        assert wanted <= kinds, (engine, wanted - kinds)
    assert set(ENGINE_PLATFORM) == set(engines())


# --------------------------------------------------------------------------- never media

# What an app may put in wx.request's `header` (it can't set Referer): values a page load
# would send, to try to pass the call off as one.
_APP_HEADERS = st.dictionaries(
    st.sampled_from(["Accept", "Range", "Accept-Encoding", "X-Requested-With", "Origin",
                     "Cache-Control", "Upgrade-Insecure-Requests", "X-Custom", "Content-Type"]),
    st.sampled_from(["image/webp,image/*,*/*;q=0.8", "video/*", "audio/mpeg", "bytes=0-",
                     "text/html,application/xhtml+xml", "com.tencent.mm", "identity",
                     "https://servicewechat.com", "application/json", "1", "no-cache",
                     "text/plain"]),
    max_size=5,
)


@given(extra=_APP_HEADERS, header_set=st.sampled_from(sets_of(*WX_APIS)))
def test_a_wx_api_call_is_never_taken_for_media_or_a_web_view_whatever_headers_it_adds(
        extra: dict[str, str], header_set: HeaderSet) -> None:
    headers = {k: v for k, v in header_set.headers.items()
               if k.lower() not in {e.lower() for e in extra}}
    interface = classify(APP, host_of(header_set.url),
                         RequestHead.of(header_set.method, [*headers.items(), *extra.items()]))
    assert interface.api in APIS
    assert interface.api not in PAGE_LOADS


@pytest.mark.parametrize("header_set", [s.param() for s in sets_of("wx.request")])
def test_wx_request_asking_for_an_image_stays_a_request(header_set: HeaderSet) -> None:
    interface = classify_set(header_set, {"Accept": "image/webp,image/*;q=0.8",
                                          "Range": "bytes=0-"})
    assert interface.api == "request"


# --------------------------------------------------------------------------- rules one by one

MP_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"
WEBVIEW_UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 miniProgram/" + APPID
PAGE_FRAME = f"https://servicewechat.com/{APPID}/0/page-frame.html"


def head(method: str = "GET", **headers: str) -> RequestHead:
    return RequestHead.of(method, [(k.replace("_", "-"), v) for k, v in headers.items()])


@pytest.mark.parametrize(("dest", "api"), [
    *[pytest.param(d, MEDIA, id=d) for d in ("image", "video", "audio", "track", "font",
                                             "style", "IMAGE")],
    *[pytest.param(d, WEBVIEW, id=d) for d in ("document", "iframe", "frame")],
    pytest.param("empty", "request", id="empty"),
    pytest.param("script", "request", id="script"),
    pytest.param("", "request", id="none"),
])
def test_sec_fetch_dest_decides_for_the_mini_programs_own_loads(dest: str, api: str) -> None:
    interface = classify(APP, "img.example.net",
                         head(User_Agent=MP_UA, Referer=PAGE_FRAME, Sec_Fetch_Dest=dest,
                              Content_Type="application/json"))
    assert interface.api == api
    assert interface.navigation is (api == WEBVIEW)


@pytest.mark.parametrize(("referer", "api"), [
    pytest.param("https://h5.example.org/page", WEBVIEW, id="own-page"),
    pytest.param(None, WEBVIEW, id="no-referer"),
    pytest.param(PAGE_FRAME, "request", id="page-frame-is-the-mini-program"),
    pytest.param("https://servicewechat.com/", "request", id="view-layer-origin"),
])
def test_web_view_user_agent_makes_a_web_view_load_unless_the_referer_is_the_mini_programs(
        referer: str | None, api: str) -> None:
    headers = {"User_Agent": WEBVIEW_UA, "Sec_Fetch_Dest": "empty"}
    if referer:
        headers["Referer"] = referer
    assert classify(APP, "h5api.example.org", head(**headers)).api == api


@pytest.mark.parametrize("user_agent", [
    pytest.param(MP_UA.replace("MiniProgramEnv/android", "miniprogram"), id="lower-case"),
    pytest.param(MP_UA, id="MiniProgramEnv"),
])
def test_only_the_exact_miniProgram_marker_is_a_web_view(user_agent: str) -> None:
    interface = classify(APP, "h5api.example.org",
                         head(User_Agent=user_agent, Sec_Fetch_Dest="empty"))
    assert interface.api == "request"


@pytest.mark.parametrize(("upgrade", "websocket"), [
    ("websocket", True), ("WebSocket", True), ("WEBSOCKET", True), (" websocket ", True),
    ("websocket, foo", True), ("h2c, WebSocket", True), ("foo,websocket", True),
    ("", False), ("h2c", False), ("websockets", False), ("web socket", False),
])
def test_websocket_is_any_token_of_the_upgrade_list_in_any_case(upgrade: str,
                                                               websocket: bool) -> None:
    assert is_websocket_upgrade(upgrade) is websocket
    interface = classify(APP, "api.example.com",
                         head(User_Agent=MP_UA, Referer=PAGE_FRAME, Upgrade=upgrade))
    assert interface.api == ("connectSocket" if websocket else "request")


def test_a_repeated_upgrade_header_is_one_token_list() -> None:
    parsed = RequestHead.of("GET", [("Upgrade", "h2c"), ("upgrade", "websocket"),
                                    ("Referer", PAGE_FRAME)])
    assert parsed.upgrade == "h2c, websocket"
    assert classify(APP, "api.example.com", parsed).api == "connectSocket"


def test_upgrade_insecure_requests_is_not_an_upgrade() -> None:
    interface = classify(APP, "api.example.com",
                         head(User_Agent=MP_UA, Referer=PAGE_FRAME, Upgrade_Insecure_Requests="1"))
    assert interface.api == "request"


@pytest.mark.parametrize(("headers", "api"), [
    pytest.param({"User_Agent": "AppleCoreMedia/1.0.0.21F90 (iPhone; U; CPU OS 17_5_1)",
                  "Range": "bytes=0-1"}, MEDIA, id="ios-player"),
    pytest.param({"Referer": "https://servicewechat.com/", "Accept": "*/*"}, MEDIA,
                 id="view-layer-origin"),
    pytest.param({"Referer": "https://servicewechat.com", "Accept": "*/*"}, MEDIA,
                 id="view-layer-origin-no-slash"),
    pytest.param({"User_Agent": MP_UA, "Accept": "image/png,image/*;q=0.8"}, MEDIA,
                 id="image-accept-no-referer"),
    pytest.param({"Referer": PAGE_FRAME, "Accept": "image/png,image/*;q=0.8"}, "request",
                 id="image-accept-page-frame"),
    pytest.param({"Referer": "https://servicewechat.com/", "Accept": "image/png",
                  "Content_Type": "application/json"}, "request",
                 id="content-type-is-an-api-call"),
    pytest.param({"User_Agent": MP_UA, "Accept": "image/png", "Sec_Fetch_Dest": "empty"},
                 "request", id="fetch-metadata-says-empty"),
])
def test_without_fetch_metadata_only_what_no_wx_call_sends_is_media(
        headers: dict[str, str], api: str) -> None:
    assert classify(APP, "img.example.net", head(**headers)).api == api


def test_post_with_an_image_accept_is_not_media() -> None:
    interface = classify(APP, "img.example.net",
                         head("POST", Referer="https://servicewechat.com/", Accept="image/png"))
    assert interface.api == "request"


@pytest.mark.parametrize(("headers", "navigation"), [
    pytest.param({"User_Agent": WEBVIEW_UA, "Accept": "text/html,*/*;q=0.8"}, True,
                 id="old-webkit-html"),
    pytest.param({"User_Agent": WEBVIEW_UA, "Accept": "application/json"}, False,
                 id="old-webkit-xhr"),
    pytest.param({"User_Agent": MP_UA, "Referer": PAGE_FRAME, "Accept": "text/html"}, False,
                 id="wx-request-asking-for-html"),
    pytest.param({"User_Agent": WEBVIEW_UA, "Accept": "text/html", "Sec_Fetch_Dest": "empty"},
                 False, id="fetch-metadata-says-empty"),
    pytest.param({"Sec_Fetch_Dest": "iframe"}, True, id="iframe"),
])
def test_navigation(headers: dict[str, str], navigation: bool) -> None:
    assert is_navigation(head(**headers)) is navigation


def test_wx_api_kinds_fall_through_to_interface_for() -> None:
    upload = head("POST", Referer=PAGE_FRAME, Content_Type="multipart/form-data; boundary=x")
    assert classify(APP, "upload.example.com", upload).api == "uploadFile"
    assert classify(APP, "cdn.example.com", head(Referer=PAGE_FRAME)).api == "downloadFile"


# --------------------------------------------------------------------------- the page


def test_non_business_domain_page_names_the_host_escaped() -> None:
    page = non_business_domain_page("https://evil.example.net<script>", "a & b")
    assert "不支持打开非业务域名" in page and "无法打开该页面" in page
    assert "evil.example.net&lt;script&gt;" in page
    assert "<script>" not in page
    assert "a &amp; b" in page
    assert page.startswith("<!DOCTYPE html>")
