"""ConcurrencyLimit frees a slot exactly once, whichever of response or error comes first,
and counts each device's calls on their own."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import http
from mitmproxy.test import taddons
from wxgate import events
from wxgate.concurrency_limit import ConcurrencyLimit
from wxgate.identify import IdentifyApp

from .addon_helpers import APPID, CONFIG, mp_flow, run_hook, runtime_for

PHONE = "127.0.0.1"  # tflow's client address


def test_response_then_error_release_one_slot_once(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        flows = [mp_flow(f"https://api.example.com/{i}") for i in range(3)]
        for flow in flows:
            identify.requestheaders(flow)
            run_hook(limit.requestheaders(flow))
        assert runtime.inflight.in_use((PHONE, APPID, "shared")) == 3
        limit.response(flows[0])
        limit.error(flows[0])
        limit.error(flows[1])
        assert runtime.inflight.in_use((PHONE, APPID, "shared")) == 1
        assert limit.inflight() == f"{PHONE}/{APPID}/shared=1"


def test_per_api_pool_counts_each_interface_alone(tmp_path: Path):
    runtime = runtime_for(tmp_path, CONFIG + "limits:\n  concurrency_pool: per_api\n")
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        for url in ("https://api.example.com/a", "https://cdn.example.com/b"):
            flow = mp_flow(url)
            identify.requestheaders(flow)
            run_hook(limit.requestheaders(flow))
    assert runtime.inflight.counts() == {(PHONE, APPID, "request"): 1,
                                         (PHONE, APPID, "downloadFile"): 1}


def _from(address: str, url: str = "https://api.example.com/x") -> http.HTTPFlow:
    flow = mp_flow(url)
    flow.client_conn.peername = (address, 50000)
    return flow


def test_each_device_gets_its_own_limit_and_the_next_call_of_a_full_one_fails(
        tmp_path: Path):
    runtime = runtime_for(tmp_path, CONFIG + "limits:\n  concurrency: 2\n"
                                             "  over_concurrency: fail\n")
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        flows = [_from(address) for address in ("192.168.1.23", "192.168.1.23",
                                                "192.168.1.24", "192.168.1.24",
                                                "::ffff:192.168.1.23")]
        for flow in flows:
            identify.requestheaders(flow)
            run_hook(limit.requestheaders(flow))
    assert [f.error is None for f in flows] == [True, True, True, True, False]
    assert runtime.inflight.counts() == {("192.168.1.23", APPID, "shared"): 2,
                                         ("192.168.1.24", APPID, "shared"): 2}


def test_a_released_slot_leaves_no_key_behind(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    identify, limit = IdentifyApp(runtime), ConcurrencyLimit(runtime)
    with taddons.context(identify, limit):
        for i in range(50):
            flow = _from(f"10.0.0.{i}")
            identify.requestheaders(flow)
            run_hook(limit.requestheaders(flow))
            limit.response(flow)
    assert runtime.inflight.keys() == set()
