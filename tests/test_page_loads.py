"""Media and web-view loads through the live addon list (taddons, no network): judged by no
server-domain list and by none of the wx API rules; a web-view navigation by
business_domains, answered under `block_with: response` with the client's own page."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from wxgate import events
from wxgate.pipeline import make_addons
from wxgate.state import Runtime
from wxgate.verdict import info_of

from .addon_helpers import APPID, CONFIG, runtime_for
from .engine_headers import HeaderSet, one

BUSINESS = CONFIG.replace("    domains:\n",
                          "    business_domains: [https://h5.example.org]\n    domains:\n")


def flow_of(header_set: HeaderSet, url: str | None = None) -> http.HTTPFlow:
    req = tutils.treq()
    req.url = url or header_set.url
    req.method = header_set.method
    req.headers.clear()
    req.headers["Host"] = req.host
    for name, value in header_set.headers.items():
        req.headers[name] = value
    flow = tflow.tflow(req=req)
    flow.client_conn.sni = req.host  # the phone's TLS names the host it asks for
    return flow


def drive(runtime: Runtime, flow: http.HTTPFlow, tmp_path: Path,
          response: http.Response | None = None) -> list[dict[str, Any]]:
    """Every requestheaders hook of the live list (and `response` ones when a response is
    given), as mitmproxy calls them; the violation lines they logged."""
    events.configure("off")
    log = tmp_path / "log.jsonl"
    events.SINK.open(log)
    addons = [a for a in make_addons(runtime) if hasattr(a, "requestheaders")
              or hasattr(a, "response")]

    async def run() -> None:
        for hook in ("requestheaders", "response"):
            if hook == "response":
                if response is None or flow.response is not None or flow.error is not None:
                    break
                flow.response = response
            for addon in addons:
                method = getattr(addon, hook, None)
                if method is None or type(addon).__name__ in ("ConfigLoader", "Banner",
                                                              "Summary"):
                    continue
                result = method(flow)
                if inspect.isawaitable(result):
                    await result

    with taddons.context():
        asyncio.run(run())
    events.SINK.close()
    return [e for e in map(json.loads, log.read_text().splitlines())
            if e.get("event") == "violation"]


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return runtime_for(tmp_path, BUSINESS)


@pytest.mark.parametrize(("engine", "kind", "url"), [
    ("android_xweb", "image", None), ("android_xweb", "video", None),
    ("ios_wkwebview", "font", None), ("ios_pre_16_4", "image", None),
    ("windows_client", "webview.xhr", None), ("devtools", "video", None),
    ("android_xweb", "webview.navigation", None),
    ("android_xweb", "webview.navigation", "https://m.h5.example.org/sub"),
])
def test_page_loads_to_unlisted_hosts_pass_with_no_violation(
        runtime: Runtime, tmp_path: Path, engine: str, kind: str, url: str | None) -> None:
    header_set = one(engine, kind)
    flow = flow_of(header_set, url)
    sent_referer = flow.request.headers.get("referer")

    assert drive(runtime, flow, tmp_path) == []
    info = info_of(flow)
    assert info.call.in_scope and info.call.api == header_set.api
    assert info.decision == "allowed"
    assert flow.response is None and flow.error is None
    # Not a wx API call: its Referer is the engine's, not rewritten to the page-frame one.
    assert flow.request.headers.get("referer") == sent_referer


def test_the_same_host_by_wx_request_is_not_listed(runtime: Runtime, tmp_path: Path) -> None:
    flow = flow_of(one("android_xweb", "wx.request"), "https://img.example.net/api")
    lines = drive(runtime, flow, tmp_path)
    assert [(e["rule"], e["api"], e["action"]) for e in lines] == [
        ("domain.not_listed", "request", "blocked")]
    assert flow.error is not None


@pytest.mark.parametrize("url", ["https://evil.example.net/", "http://h5.example.org/"])
@pytest.mark.parametrize("block_with", ["fail", "response"])
def test_web_view_navigation_off_business_domains_is_refused(
        tmp_path: Path, url: str, block_with: str) -> None:
    runtime = runtime_for(tmp_path, BUSINESS.replace("block_with: fail",
                                                     f"block_with: {block_with}"))
    flow = flow_of(one("ios_wkwebview", "webview.navigation"), url)
    lines = drive(runtime, flow, tmp_path)
    assert [(e["rule"], e["api"], e["action"], e["errMsg"]) for e in lines] == [
        ("webview.not_listed", "webview", "blocked", None)]
    host = url.split("/")[2]
    if block_with == "fail":
        assert flow.error is not None and flow.response is None
    else:
        assert flow.response is not None and flow.response.status_code == 403
        assert flow.response.headers["content-type"] == "text/html; charset=utf-8"
        assert flow.response.headers["x-wxgate-rule"] == "webview.not_listed"
        page = flow.response.get_text()
        assert "不支持打开非业务域名" in page and f"://{host}" in page


def test_the_page_escapes_what_the_client_wrote(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, BUSINESS.replace("block_with: fail",
                                                     "block_with: response"))
    flow = flow_of(one("android_xweb", "webview.navigation"), "https://evil.example.net/")
    odd = "evil.example.net\"><b>x</b>"
    flow.request.host = flow.request.headers["Host"] = flow.client_conn.sni = odd
    lines = drive(runtime, flow, tmp_path)
    assert [e["rule"] for e in lines] == ["webview.not_listed"]
    assert flow.response is not None
    page = flow.response.get_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_other_rules_keep_their_json_body(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, BUSINESS.replace("block_with: fail",
                                                     "block_with: response"))
    flow = flow_of(one("android_xweb", "wx.request"), "https://img.example.net/api")
    drive(runtime, flow, tmp_path)
    assert flow.response is not None
    assert flow.response.headers["content-type"].startswith("application/json")
    assert json.loads(flow.response.content or b"")["rule"] == "domain.not_listed"


def test_a_backgrounded_app_still_loads_media_but_fails_its_wx_calls(
        runtime: Runtime, tmp_path: Path) -> None:
    runtime.background[APPID] = time.time()
    media = flow_of(one("android_xweb", "image"))
    assert drive(runtime, media, tmp_path) == []
    call = flow_of(one("android_xweb", "wx.request"))
    assert [e["rule"] for e in drive(runtime, call, tmp_path)] == ["background.blocked"]


def test_faults_act_on_wx_calls_only(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, BUSINESS + "faults:\n  - match: {url: '*'}\n    drop: 1.0\n")
    media = flow_of(one("windows_client", "image"))
    drive(runtime, media, tmp_path)
    assert media.error is None
    call = flow_of(one("windows_client", "wx.request"))
    drive(runtime, call, tmp_path)
    assert call.error is not None


def test_a_media_redirect_is_not_judged_as_a_wx_call(runtime: Runtime, tmp_path: Path) -> None:
    flow = flow_of(one("android_xweb", "image"))
    moved = tutils.tresp(status_code=302, content=b"")
    moved.headers["Location"] = "https://elsewhere.example.net/a.png"
    assert drive(runtime, flow, tmp_path, moved) == []
    assert flow.response is moved and info_of(flow).decision == "allowed"


def test_a_media_load_takes_no_concurrency_slot(runtime: Runtime, tmp_path: Path) -> None:
    drive(runtime, flow_of(one("android_xweb", "video")), tmp_path)
    assert runtime.inflight.keys() == set()
