"""IdentifyApp: which flows are a mini program's, which app and API they belong to."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import connection, http
from mitmproxy.test import taddons, tflow, tutils
from wxgate import events
from wxgate import identify as identify_module
from wxgate.identify import IdentifyApp
from wxgate.verdict import info_of

from .addon_helpers import APPID, CONFIG, REFERER, runtime_for

IOS = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) MicroMessenger/8.0.50 MiniProgramEnv/iOS"
# iOS's WebKit loading an <image>: no marker in the User-Agent, the bare origin as Referer.
IOS_WEBKIT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 15_5 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.23(0x1800172a)")
WEBVIEW = "Mozilla/5.0 (Linux) MicroMessenger/8.0.50 miniProgram/" + APPID


@pytest.mark.parametrize(
    ("scope", "url", "method", "headers", "expected"),
    [
        ("miniprogram", "https://api.example.com/", "GET", {"Referer": REFERER},
         (True, APPID, "request", None)),
        ("miniprogram", "https://api.example.com/", "GET", {"User-Agent": IOS},
         (True, APPID, "request", "ios")),
        ("miniprogram", "https://api.example.com/", "GET", {"xweb_xhr": "1"},
         (True, APPID, "request", None)),
        ("miniprogram", "https://api.example.com/", "GET", {"User-Agent": "curl/8"},
         (False, None, "other", None)),
        ("all", "https://api.example.com/", "GET", {"User-Agent": "curl/8"},
         (True, APPID, "request", None)),
        ("miniprogram", "https://upload.example.com/", "POST",
         {"Referer": REFERER, "Content-Type": "multipart/form-data; boundary=x"},
         (True, APPID, "uploadFile", None)),
        ("miniprogram", "https://cdn.example.com/a.png", "GET", {"Referer": REFERER},
         (True, APPID, "downloadFile", None)),
        ("miniprogram", "https://ws.example.com/", "GET",
         {"Referer": REFERER, "Upgrade": "websocket"}, (True, APPID, "connectSocket", None)),
        ("miniprogram", "https://api.example.com/", "GET",
         {"Referer": REFERER, "Upgrade": "WebSocket, h2c"}, (True, APPID, "connectSocket", None)),
        ("miniprogram", "https://img.example.net/a.png", "GET",
         {"Referer": REFERER, "Sec-Fetch-Dest": "image", "Sec-Fetch-Mode": "no-cors"},
         (True, APPID, "media", None)),
        ("miniprogram", "https://img.example.net/a.png", "GET",
         {"Referer": "https://servicewechat.com/", "User-Agent": IOS_WEBKIT,
          "Accept": "image/webp,image/png,image/*;q=0.8"}, (True, APPID, "media", "ios")),
        ("miniprogram", "https://h5.example.org/", "GET",
         {"User-Agent": WEBVIEW, "Sec-Fetch-Dest": "document"}, (True, APPID, "webview", None)),
        ("miniprogram", "https://h5api.example.org/list", "GET",
         {"User-Agent": WEBVIEW, "Referer": "https://h5.example.org/", "Sec-Fetch-Dest": "empty"},
         (True, APPID, "webview", None)),
        ("miniprogram", "http://mitm.it/", "GET", {"Referer": REFERER},
         (False, None, "other", None)),
        ("miniprogram", "http://wxgate.local/status", "GET", {"Referer": REFERER},
         (False, None, "other", None)),
    ],
    ids=["referer", "ios-ua", "windows-xweb-header", "not-a-mini-program", "scope-all",
         "multipart-upload", "download-only-host", "websocket", "websocket-token-list",
         "media-by-fetch-dest", "media-ios-webkit-without-fetch-metadata",
         "webview-navigation", "webview-xhr", "onboarding", "control-host"],
)
def test_flow_is_attributed(tmp_path: Path, scope: str, url: str, method: str,
                            headers: dict[str, str], expected: tuple[object, ...]):
    runtime = runtime_for(tmp_path, CONFIG + f"scope: {scope}\n")
    events.configure("off")
    identify = IdentifyApp(runtime)
    req = tutils.treq()
    req.url, req.method = url, method
    req.headers.clear()
    req.headers["Host"] = req.host
    for name, value in headers.items():
        req.headers[name] = value
    flow = tflow.tflow(req=req)
    with taddons.context(identify):
        identify.requestheaders(flow)
    call = info_of(flow).call
    assert (call.in_scope, call.appid, call.api, call.platform) == expected


def call_on(client: connection.Client, url: str = "https://api.example.com/",
            **headers: str) -> http.HTTPFlow:
    req = tutils.treq()
    req.url = url
    req.headers.clear()
    req.headers["Host"] = req.host
    for name, value in headers.items():
        req.headers[name.replace("_", "-")] = value
    flow = tflow.tflow(req=req)
    flow.client_conn = client
    return flow


def test_a_call_repeating_the_last_request_head_on_its_connection_is_identified_alike(
        tmp_path: Path):
    """The Call is remembered per connection; anything it is made of that differs (a header,
    the host, the config) identifies the call afresh."""
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify = IdentifyApp(runtime)
    client, other = tflow.tclient_conn(), tflow.tclient_conn()
    with taddons.context(identify):
        first, again = call_on(client, Referer=REFERER), call_on(client, Referer=REFERER)
        elsewhere = call_on(other, Referer=REFERER)
        changed = call_on(client, User_Agent=IOS)
        host = call_on(client, "https://cdn.example.com/a.png", Referer=REFERER)
        for flow in (first, again, elsewhere, changed, host):
            identify.requestheaders(flow)
        assert info_of(again).call is info_of(first).call
        assert info_of(elsewhere).call == info_of(first).call
        assert info_of(changed).call.platform == "ios"
        assert info_of(host).call.api == "downloadFile"

        runtime.install(runtime_for(tmp_path, CONFIG + "scope: all\n").config)
        reloaded = call_on(client, "https://cdn.example.com/a.png", Referer=REFERER)
        identify.requestheaders(reloaded)
        assert info_of(reloaded).call is not info_of(host).call

        identify.client_disconnected(client)
        assert client.id not in identify._last


def test_a_changed_onboarding_host_is_not_identified_from_a_remembered_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify = IdentifyApp(runtime)
    client = tflow.tclient_conn()
    with taddons.context(identify):
        before = call_on(client, Referer=REFERER)
        identify.requestheaders(before)
        assert info_of(before).call.in_scope
        monkeypatch.setattr(identify_module, "onboarding_host", lambda: "api.example.com")
        identify.configure({"onboarding_host"})
        after = call_on(client, Referer=REFERER)
        identify.requestheaders(after)
        assert not info_of(after).call.in_scope
