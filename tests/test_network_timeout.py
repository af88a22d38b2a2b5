"""NetworkTimeout's clocks: every judged call fires at its own deadline, while the calls
under one limit share one timer (tests/e2e covers the interrupted connection)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from wxgate import events, network_timeout
from wxgate.identify import IdentifyApp
from wxgate.network_timeout import NetworkTimeout

from .addon_helpers import CONFIG, mp_flow, runtime_for

# request 300 ms, downloadFile 150 ms: far enough apart to tell on a loaded machine.
TIMEOUTS = CONFIG.replace("log:", "    network_timeout: {request: 300, downloadFile: 150}\nlog:")
TOLERANCE_S = 0.1


@pytest.fixture
def fired(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """(flow id, seconds after its start) of every timeout, instead of aborting the flow."""
    fired: list[tuple[str, float]] = []

    def record(flow: http.HTTPFlow, violation: Any, runtime: Any) -> bool:
        assert violation.rule == "timeout.exceeded"
        fired.append((flow.id, time.time() - flow.request.timestamp_start))
        return True

    monkeypatch.setattr(network_timeout, "interrupt", record)
    return fired


def _clocks(tmp_path: Path) -> tuple[IdentifyApp, NetworkTimeout]:
    runtime = runtime_for(tmp_path, TIMEOUTS)
    events.configure("off")
    return IdentifyApp(runtime), NetworkTimeout(runtime)


def _start(identify: IdentifyApp, timeout: NetworkTimeout, url: str = "https://api.example.com/x",
           started: float | None = None) -> http.HTTPFlow:
    flow = mp_flow(url)
    flow.request.timestamp_start = time.time() if started is None else started
    identify.requestheaders(flow)
    timeout.requestheaders(flow)
    return flow


def test_calls_under_one_limit_share_one_timer_and_each_fires_at_its_deadline(
        tmp_path: Path, fired: list[tuple[str, float]]) -> None:
    identify, timeout = _clocks(tmp_path)

    async def run() -> list[http.HTTPFlow]:
        flows = []
        for _ in range(3):
            flows.append(_start(identify, timeout))
            await asyncio.sleep(0.05)
        assert len(timeout._alarms) == 1 and not timeout._timers
        await asyncio.sleep(0.45)
        return flows

    with taddons.context(identify, timeout):
        flows = asyncio.run(run())
    assert [flow_id for flow_id, _ in fired] == [f.id for f in flows]
    assert all(0.3 <= after < 0.3 + TOLERANCE_S for _, after in fired), fired
    assert not timeout._clocks and not timeout._clock_of and not timeout._alarms


def test_a_call_that_ends_in_time_never_fires_and_leaves_nothing_behind(
        tmp_path: Path, fired: list[tuple[str, float]]) -> None:
    identify, timeout = _clocks(tmp_path)

    async def run() -> None:
        first = _start(identify, timeout)
        second = _start(identify, timeout)
        timeout.response(first)  # the call the limit's timer waits for ends first
        await asyncio.sleep(0.1)
        timeout.error(second)
        await asyncio.sleep(0.35)

    with taddons.context(identify, timeout):
        asyncio.run(run())
    assert fired == []
    assert not timeout._clocks and not timeout._clock_of and not timeout._timers


def test_a_deadline_earlier_than_one_already_waiting_fires_on_time(
        tmp_path: Path, fired: list[tuple[str, float]]) -> None:
    """A call whose head took long to arrive starts its clock after a later call's: its
    deadline is not held up behind the other's."""
    identify, timeout = _clocks(tmp_path)

    async def run() -> tuple[http.HTTPFlow, http.HTTPFlow]:
        later = _start(identify, timeout)
        slow_head = _start(identify, timeout, started=time.time() - 0.2)
        assert slow_head.id in timeout._timers
        await asyncio.sleep(0.45)
        return later, slow_head

    with taddons.context(identify, timeout):
        later, slow_head = asyncio.run(run())
    assert [flow_id for flow_id, _ in fired] == [slow_head.id, later.id]
    assert all(0.3 <= after < 0.3 + TOLERANCE_S for _, after in fired), fired


def test_each_limit_fires_at_its_own_deadline(
        tmp_path: Path, fired: list[tuple[str, float]]) -> None:
    identify, timeout = _clocks(tmp_path)

    async def run() -> tuple[http.HTTPFlow, http.HTTPFlow]:
        request = _start(identify, timeout)
        download = _start(identify, timeout, "https://cdn.example.com/file.bin")
        await asyncio.sleep(0.45)
        return request, download

    with taddons.context(identify, timeout):
        request, download = asyncio.run(run())
    after = dict(fired)
    assert list(after) == [download.id, request.id]
    assert 0.15 <= after[download.id] < 0.15 + TOLERANCE_S
    assert 0.3 <= after[request.id] < 0.3 + TOLERANCE_S
