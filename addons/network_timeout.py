"""networkTimeout: a call with no complete response in time fails as `{api}:fail timeout`.

The clock starts when the request headers arrive (as the client's starts at the
call) and stops at the complete response (`response`; for a WebSocket the 101).
When it fires, the flow is ended through the aborter: its upstream connection is
closed and the client sees a network failure. Time the call spent waiting for an
upstream connection that wxgate did not hold (`UpstreamPool.waited_s`) is time the
phone would not have spent, so the deadline moves by as much.

Every judged call starts a clock, so a clock costs no timer of its own: the calls under
one limit are kept in the order their clocks started, which is the order of their
deadlines, and one timer per limit waits for the first of them. A call that ends is
only dropped from its table. A call whose deadline comes before one already in its
table (a head that took long to arrive), or whose deadline moved, gets a timer of its own.
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
        # limit_ms -> {flow id: (flow, deadline)}, deadlines ascending; the timer of each
        # limit waits for the first one still there when it was set
        self._clocks: dict[int, dict[str, tuple[http.HTTPFlow, float]]] = {}
        self._alarms: dict[int, asyncio.TimerHandle] = {}
        # flow id -> the table its clock is in
        self._clock_of: dict[str, dict[str, tuple[http.HTTPFlow, float]]] = {}
        # flow id -> a timer of its own: a deadline out of order, or moved
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # flow id -> seconds of upstream wait its deadline was already moved by
        self._credited: dict[str, float] = {}

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = judgeable(flow)
        if call is None or call.app is None or call.api not in APIS or not flow.live:
            return
        limit_ms = call.app.network_timeout[call.api]
        deadline = flow.request.timestamp_start + limit_ms / 1000
        clocks = self._clocks.get(limit_ms)
        if clocks is None:
            clocks = self._clocks[limit_ms] = {}
        elif clocks and next(reversed(clocks.values()))[1] > deadline:
            self._timers[flow.id] = asyncio.get_running_loop().call_later(
                max(0.0, deadline - time.time()), self._fire, flow, limit_ms)
            return
        clocks[flow.id] = (flow, deadline)
        self._clock_of[flow.id] = clocks
        if limit_ms not in self._alarms:
            self._set_alarm(limit_ms, deadline)

    def _set_alarm(self, limit_ms: int, deadline: float) -> None:
        self._alarms[limit_ms] = asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.time()), self._ring, limit_ms)

    def _ring(self, limit_ms: int) -> None:
        """The first deadline under `limit_ms` when the timer was set has come: fire the
        calls due, and wait for the next."""
        del self._alarms[limit_ms]
        clocks = self._clocks.get(limit_ms, {})
        now = time.time()
        while clocks:
            flow_id, (flow, deadline) = next(iter(clocks.items()))
            if deadline > now:
                self._set_alarm(limit_ms, deadline)
                return
            del clocks[flow_id]
            self._clock_of.pop(flow_id, None)
            self._fire(flow, limit_ms)
        self._clocks.pop(limit_ms, None)

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
        # The timer of the call's limit stays: it finds the call gone, and waits for the next.
        clocks = self._clock_of.pop(flow.id, None)
        if clocks is not None:
            clocks.pop(flow.id, None)
        self._credited.pop(flow.id, None)
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def done(self) -> None:
        for timer in [*self._alarms.values(), *self._timers.values()]:
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
