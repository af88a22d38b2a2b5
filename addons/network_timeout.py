"""networkTimeout: a call with no complete response in time fails as `{api}:fail timeout`.

The clock starts when the request headers arrive (as the client's starts at the
call) and stops at the complete response (`response`; for a WebSocket the 101).
When it fires, the flow is ended through the aborter: its upstream connection is
closed and the client sees a network failure. Time the call spent waiting for an
upstream connection that wxgate did not hold (`UpstreamPool.waited_s`) is time the
phone would not have spent, so the deadline moves by as much.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from .policy.rules import APIS, Violation
from .state import Runtime
from .upstream_pool import UpstreamPool
from .verdict import fail_closed, info_of, interrupt, judgeable, record


class NetworkTimeout:
    def __init__(self, runtime: Runtime, upstream: UpstreamPool | None = None) -> None:
        self.runtime = runtime
        self.upstream = upstream
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # flow id -> seconds of upstream wait its deadline was already moved by
        self._credited: dict[str, float] = {}

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = judgeable(flow)
        if call is None or call.app is None or call.api not in APIS or not flow.live:
            return
        limit_ms = call.app.network_timeout[call.api]
        started = flow.request.timestamp_start
        delay = max(0.0, started + limit_ms / 1000 - time.time())
        self._timers[flow.id] = asyncio.get_running_loop().call_later(
            delay, self._fire, flow, limit_ms)

    def _fire(self, flow: http.HTTPFlow, limit_ms: int) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None and flow.response.timestamp_end is not None:
            return
        credited = self._credited.get(flow.id, 0.0)
        owed = (self.upstream.waited_s(flow) if self.upstream else 0.0) - credited
        if owed > 0.001:
            self._credited[flow.id] = credited + owed
            self._timers[flow.id] = asyncio.get_running_loop().call_later(
                owed, self._fire, flow, limit_ms)
            return
        self._credited.pop(flow.id, None)
        elapsed_ms = round((time.time() - flow.request.timestamp_start) * 1000)
        extra = {"limit_ms": limit_ms, "elapsed_ms": elapsed_ms}
        waited = ""
        if credited:
            extra["upstream_wait_ms"] = round(credited * 1000)
            waited = f", {extra['upstream_wait_ms']} ms of it waiting for an upstream connection"
        info = info_of(flow)
        interrupt(flow, Violation(
            "timeout.exceeded",
            f"no complete response within the {info.call.api} networkTimeout of {limit_ms} ms "
            f"({elapsed_ms} ms elapsed{waited})",
            info.call.api, extra=extra,
        ), self.runtime)

    def _stop(self, flow: http.HTTPFlow) -> None:
        self._credited.pop(flow.id, None)
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def response(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)
        if not flow.live and flow.response is not None:
            self._judge_capture(flow, flow.response.timestamp_end
                                or flow.response.timestamp_start, "the response was complete")

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)
        if not flow.live and flow.error is not None and flow.response is None:
            self._judge_capture(flow, flow.error.timestamp, "the call failed")

    def _judge_capture(self, flow: http.HTTPFlow, done: float | None, what: str) -> None:
        """A loaded flow (audit, `-r`): judged from its recorded timestamps."""
        info = info_of(flow)
        if (not info.call.in_scope or info.call.app is None or info.call.api not in APIS
                or "timeout.exceeded" in info.rules):
            return
        start = flow.request.timestamp_start
        limit_ms = info.call.app.network_timeout[info.call.api]
        if done is None or start is None or (elapsed_ms := round((done - start) * 1000)) <= (
                limit_ms):
            return
        record(flow, Violation(
            "timeout.exceeded",
            f"no complete response within the {info.call.api} networkTimeout of {limit_ms} ms "
            f"({what} after {elapsed_ms} ms in the capture)",
            info.call.api, extra={"limit_ms": limit_ms, "elapsed_ms": elapsed_ms},
        ), self.runtime, "reported")
