"""Judge: the stateless rules run once per identified call, in their order; the first one
that blocks ends the judging, a `referer.rewritten` rewrites the header, and the Referer's
appid must be a configured app (DevTools' `touristappid` is one when the config names it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from wxgate import events
from wxgate import judge as judge_module
from wxgate.identify import IdentifyApp
from wxgate.judge import Judge
from wxgate.policy.call import Call
from wxgate.policy.config import Config
from wxgate.verdict import info_of

from .addon_helpers import APPID, CONFIG, REFERER, mp_flow, runtime_for

TOURIST_REFERER = "https://servicewechat.com/touristappid/devtools/page-frame.html"
TOURIST_APP = """\
  - appid: touristappid
    version: devtools
    domains:
      request: [https://api.example.com]
"""


def judged(tmp_path: Path, flow: http.HTTPFlow, config: str = CONFIG) -> list[str]:
    """The rule ids logged for one call, identified and then judged."""
    runtime = runtime_for(tmp_path, config)
    events.configure("off")
    identify, judge = IdentifyApp(runtime), Judge(runtime)
    with taddons.context(identify, judge):
        identify.requestheaders(flow)
        judge.requestheaders(flow)
    return list(info_of(flow).rules)


def test_tourist_mode_traffic_is_not_an_appid_mismatch_when_configured(tmp_path: Path):
    config = CONFIG.replace("apps:\n", "apps:\n" + TOURIST_APP)
    assert judged(tmp_path, mp_flow(Referer=TOURIST_REFERER), config) == []


def test_tourist_mode_traffic_is_an_appid_mismatch_when_not_configured(tmp_path: Path):
    assert judged(tmp_path, mp_flow(Referer=TOURIST_REFERER)) == ["referer.appid_mismatch"]


def test_an_allowed_call_breaks_no_rule_and_keeps_its_referer(tmp_path: Path):
    flow = mp_flow()
    assert judged(tmp_path, flow) == []
    assert flow.request.headers["Referer"] == REFERER and flow.error is None


def test_an_invalid_referer_is_reported_rewritten_and_the_url_still_judged(tmp_path: Path):
    flow = mp_flow("https://evil.example.net/x", Referer="https://example.org/")
    flow.request.headers["User-Agent"] += " MiniProgramEnv/android"
    assert judged(tmp_path, flow) == ["referer.invalid", "referer.rewritten",
                                      "domain.not_listed"]
    assert flow.request.headers["Referer"] == REFERER
    # What the client sent stays with the flow, for an audit of the saved flow.
    assert flow.metadata["wxgate_referer_sent"] == "https://example.org/"


def test_the_first_blocking_rule_ends_the_judging(tmp_path: Path):
    flow = mp_flow("https://evil.example.net/x")
    flow.client_conn.sni = "api.example.com"
    assert judged(tmp_path, flow) == ["domain.host_mismatch"]
    assert info_of(flow).decision == "blocked"


def test_in_report_mode_every_rule_is_judged_and_logged(tmp_path: Path):
    flow = mp_flow("http://evil.example.net/x", Referer=f"https://servicewechat.com/{APPID}/"
                   "devtools/page-frame.html")
    flow.request.headers["Host"] = "api.example.com"
    config = CONFIG.replace("mode: enforce", "mode: report")
    assert judged(tmp_path, flow, config) == ["domain.host_mismatch", "referer.rewritten",
                                              "scheme.insecure"]
    assert info_of(flow).decision == "reported"


def test_calls_outside_scope_are_not_judged(tmp_path: Path):
    flow = mp_flow("https://evil.example.net/x")
    del flow.request.headers["Referer"]
    flow.request.headers["User-Agent"] = "curl/8.0"
    assert judged(tmp_path, flow) == []
    call = info_of(flow).call
    assert call.user_agent == "curl/8.0" and not call.in_scope


def test_a_call_that_broke_no_rule_is_not_judged_again_until_the_config_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = runtime_for(tmp_path, CONFIG)
    events.configure("off")
    identify, judge = IdentifyApp(runtime), Judge(runtime)
    ran: list[str] = []

    def counted(call: Call, config: Config) -> None:
        ran.append(call.host)

    monkeypatch.setattr(judge_module, "CALL_RULES", (counted,))
    with taddons.context(identify, judge):
        for _ in range(2):
            flow = mp_flow()
            identify.requestheaders(flow)
            judge.requestheaders(flow)
        assert len(ran) == 1
        runtime.install(replace(runtime.config))
        flow = mp_flow()
        identify.requestheaders(flow)
        judge.requestheaders(flow)
    assert len(ran) == 2
