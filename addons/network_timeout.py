"""networkTimeout: a call with no complete response in time fails as `{api}:fail timeout`.

The clock starts when the request headers arrive (as the client's starts at the
call) and stops at the complete response (`response`; for a WebSocket the 101).
When it fires, the flow is ended through the aborter: its upstream connection is
closed and the client sees a network failure.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from .policy.rules import APIS, Violation
from .state import Runtime
from .verdict import fail_closed, info_of, interrupt, judgeable


class NetworkTimeout:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info = judgeable(flow)
        if info is None or info.app is None or info.api not in APIS or not flow.live:
            return
        limit_ms = info.app.network_timeout[info.api]
        started = flow.request.timestamp_start
        delay = max(0.0, started + limit_ms / 1000 - time.time())
        self._timers[flow.id] = asyncio.get_running_loop().call_later(
            delay, self._fire, flow, limit_ms)

    def _fire(self, flow: http.HTTPFlow, limit_ms: int) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None and flow.response.timestamp_end is not None:
            return
        elapsed_ms = round((time.time() - flow.request.timestamp_start) * 1000)
        info = info_of(flow)
        interrupt(flow, Violation(
            "timeout.exceeded",
            f"no complete response within the {info.api} networkTimeout of {limit_ms} ms "
            f"({elapsed_ms} ms elapsed)",
            info.api, extra={"limit_ms": limit_ms, "elapsed_ms": elapsed_ms},
        ), self.runtime)

    def _stop(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def response(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)
