"""RefererGuard: the Referer's appid must be a configured app; DevTools' tourist mode
(`touristappid`) is one when the config names it."""

from __future__ import annotations

from pathlib import Path

from mitmproxy.test import taddons
from wxgate import events
from wxgate.identify import IdentifyApp
from wxgate.referer_guard import RefererGuard
from wxgate.verdict import info_of

from .addon_helpers import CONFIG, mp_flow, runtime_for

TOURIST_REFERER = "https://servicewechat.com/touristappid/devtools/page-frame.html"
TOURIST_APP = """\
  - appid: touristappid
    version: devtools
    domains:
      request: [https://api.example.com]
"""


def judge(tmp_path: Path, config: str, referer: str) -> list[str]:
    """The rule ids RefererGuard logs for one call with this Referer."""
    runtime = runtime_for(tmp_path, config)
    events.configure("off")
    identify, guard = IdentifyApp(runtime), RefererGuard(runtime)
    flow = mp_flow(Referer=referer)
    with taddons.context(identify, guard):
        identify.requestheaders(flow)
        guard.requestheaders(flow)
    return list(info_of(flow).rules)


def test_tourist_mode_traffic_is_not_an_appid_mismatch_when_configured(tmp_path: Path):
    config = CONFIG.replace("apps:\n", "apps:\n" + TOURIST_APP)
    assert judge(tmp_path, config, TOURIST_REFERER) == []


def test_tourist_mode_traffic_is_an_appid_mismatch_when_not_configured(tmp_path: Path):
    assert judge(tmp_path, CONFIG, TOURIST_REFERER) == ["referer.appid_mismatch"]
