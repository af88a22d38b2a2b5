"""ConcurrencyLimit frees a slot exactly once, whichever of response or error comes first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mitmproxy.test import taddons
from wxgate import events
from wxgate.concurrency_limit import ConcurrencyLimit
from wxgate.identify import IdentifyApp

from .addon_helpers import APPID, CONFIG, mp_flow, runtime_for


def test_response_then_error_release_one_slot_once(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        flows = [mp_flow(f"https://api.example.com/{i}") for i in range(3)]
        for flow in flows:
            identify.requestheaders(flow)
            asyncio.run(limit.requestheaders(flow))
        assert runtime.inflight.in_use((APPID, "shared")) == 3
        limit.response(flows[0])
        limit.error(flows[0])
        limit.error(flows[1])
        assert runtime.inflight.in_use((APPID, "shared")) == 1
        assert limit.inflight() == f"{APPID}/shared=1"


def test_per_api_pool_counts_each_interface_alone(tmp_path: Path):
    runtime = runtime_for(tmp_path, CONFIG + "limits:\n  concurrency_pool: per_api\n")
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        for url in ("https://api.example.com/a", "https://cdn.example.com/b"):
            flow = mp_flow(url)
            identify.requestheaders(flow)
            asyncio.run(limit.requestheaders(flow))
    assert runtime.inflight.counts() == {(APPID, "request"): 1, (APPID, "downloadFile"): 1}
