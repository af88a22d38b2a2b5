"""Background per (device, app): `?client=` interrupts and blocks that phone alone; without
it every device of the app, including one that starts later, until foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from wxgate import events
from wxgate.background import Background
from wxgate.identify import IdentifyApp
from wxgate.state import Runtime
from wxgate.verdict import info_of

from .addon_helpers import APPID, CONFIG, mp_flow, runtime_for

PHONE_A, PHONE_B, PHONE_C = "192.168.1.23", "192.168.1.24", "192.168.1.25"


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    events.configure("off")
    return runtime_for(tmp_path, CONFIG + "limits:\n  background_grace_s: 0\n")


def _start(runtime: Runtime, background: Background, address: str) -> http.HTTPFlow:
    flow = mp_flow()
    flow.client_conn.peername = (address, 50000)
    IdentifyApp(runtime).requestheaders(flow)
    background.requestheaders(flow)
    return flow


def _blocked(runtime: Runtime, background: Background, address: str) -> bool:
    return info_of(_start(runtime, background, address)).rules == ["background.blocked"]


def test_background_on_one_device_interrupts_and_blocks_that_device_only(runtime: Runtime):
    background = Background(runtime)

    async def scenario() -> None:
        a1, a2 = (_start(runtime, background, PHONE_A) for _ in range(2))
        b1 = _start(runtime, background, PHONE_B)
        background.go_background(APPID, device=PHONE_A)
        await asyncio.sleep(0.01)  # past the grace deadline (0 s)
        assert [info_of(f).rules for f in (a1, a2, b1)] == [
            ["background.interrupted"], ["background.interrupted"], []]
        assert _blocked(runtime, background, PHONE_A)
        assert not _blocked(runtime, background, PHONE_B)
        background.go_foreground(APPID, device=PHONE_A)
        assert not _blocked(runtime, background, PHONE_A)

    with taddons.context(background):
        asyncio.run(scenario())


def test_background_without_a_device_takes_every_device_and_later_ones(runtime: Runtime):
    background = Background(runtime)

    async def scenario() -> None:
        a1, b1 = _start(runtime, background, PHONE_A), _start(runtime, background, PHONE_B)
        background.go_background(APPID)
        await asyncio.sleep(0.01)
        assert [info_of(f).rules for f in (a1, b1)] == [["background.interrupted"]] * 2
        assert [_blocked(runtime, background, p) for p in (PHONE_A, PHONE_B, PHONE_C)] == [
            True, True, True]
        # One phone back to foreground; the others stay in background.
        background.go_foreground(APPID, device=PHONE_B)
        assert [_blocked(runtime, background, p) for p in (PHONE_A, PHONE_B, PHONE_C)] == [
            True, False, True]
        b2 = _start(runtime, background, PHONE_B)
        # Background everywhere again: the phone brought back follows, with its own grace.
        background.go_background(APPID)
        await asyncio.sleep(0.01)
        assert info_of(b2).rules == ["background.interrupted"]
        assert _blocked(runtime, background, PHONE_B)
        background.go_foreground(APPID)
        assert [_blocked(runtime, background, p) for p in (PHONE_A, PHONE_B, PHONE_C)] == [
            False, False, False]
        assert all(not d.background and not d.foreground for d in runtime.devices)

    with taddons.context(background):
        asyncio.run(scenario())


def test_a_device_backgrounded_alone_keeps_its_state_when_the_app_goes_everywhere(
        runtime: Runtime):
    background = Background(runtime)

    async def scenario() -> None:
        background.go_background(APPID, device=PHONE_A)
        since = runtime.background_since(PHONE_A, APPID)
        background.go_background(APPID)
        assert runtime.background_since(PHONE_A, APPID) == since
        background.go_foreground(APPID, device=PHONE_A)
        assert runtime.background_since(PHONE_A, APPID) is None
        assert runtime.background_since(PHONE_B, APPID) is not None

    with taddons.context(background):
        asyncio.run(scenario())


def test_calls_are_tracked_per_device_until_they_end(runtime: Runtime):
    background = Background(runtime)
    with taddons.context(background):
        flows = [_start(runtime, background, p) for p in (PHONE_A, PHONE_A, PHONE_B)]
        assert {d.address: len(d.running) for d in runtime.devices} == {PHONE_A: 2, PHONE_B: 1}
        background.error(flows[0])
        background.error(flows[0])
        background.response(flows[1])
        assert {d.address: len(d.running) for d in runtime.devices} == {PHONE_A: 0, PHONE_B: 1}
        assert background._running.keys() == {flows[2].id}


def test_device_idle_option_sets_the_registry_and_refuses_zero(runtime: Runtime):
    background = Background(runtime)
    with taddons.context(background) as tctx:
        tctx.configure(background, wxgate_device_idle_ms=1500)
        assert runtime.devices.idle_ms == 1500
        with pytest.raises(Exception, match="at least 1"):
            tctx.configure(background, wxgate_device_idle_ms=0)
