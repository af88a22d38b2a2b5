"""Carries out the faults (addons/faults): delay, hold until timeout, drop, status.

Faults are not violations: each one applied is logged as a `fault_injected` event.
Runs after the limits, so a delayed call keeps its slot as a slow server would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Coroutine
from typing import Any

from mitmproxy import http

from . import events
from .faults import Action
from .policy.rules import APIS
from .state import Runtime
from .verdict import fail_closed, info_of, judgeable

# A held call outlives its networkTimeout by this much: in enforce mode the timeout
# aborts it first; in report mode it then goes on to the server.
HOLD_MARGIN_S = 0.25


class Faults:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _until_timeout(self, flow: http.HTTPFlow) -> float:
        call = info_of(flow).call
        limit_ms = call.app.network_timeout.get(call.api, 60000) if call.app else 60000
        return max(0.0, flow.request.timestamp_start + limit_ms / 1000 - time.time()
                   ) + HOLD_MARGIN_S

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Applies the faults that match; a delay or hold comes back as what to await."""
        call = judgeable(flow)
        # No fault set (the usual case): skip building pretty_url, which cost more than
        # every other judged rule together in the profile of an allowed call.
        # Faults act on wx API calls only, not on media or web-view loads.
        if call is None or call.api not in APIS or not flow.live or not self.runtime.faults.faults:
            return None
        decided = self.runtime.faults.decide(
            call.appid, call.api, flow.request.method, flow.request.pretty_url, call.device)
        return self._apply(flow, decided)

    def _apply(self, flow: http.HTTPFlow, decided: list[tuple[int, Action]]
               ) -> Coroutine[Any, Any, None] | None:
        """Carries out `decided` in order until one answers the call; a delay or hold
        comes back as what to await, with the faults after it."""
        call = info_of(flow).call
        for at, (fault_id, action) in enumerate(decided):
            events.logger().info(
                "fault_injected", fault_id=fault_id, kind=action.kind, appid=call.appid,
                api=call.api, url=flow.request.pretty_url, client=call.device, flow_id=flow.id,
            )
            if action.drop:
                flow.kill()
                return None
            if action.status is not None:
                flow.request.stream = False
                flow.metadata["wxgate_synthetic"] = True
                flow.response = http.Response.make(
                    action.status,
                    json.dumps({"wxgate_fault": fault_id, "status": action.status}).encode(),
                    {"Content-Type": "application/json"},
                )
                return None
            if action.delay_s or action.hold:
                seconds = self._until_timeout(flow) if action.hold else action.delay_s
                return self._hold(flow, seconds, decided[at + 1:])
        return None

    async def _hold(self, flow: http.HTTPFlow, seconds: float,
                    rest: list[tuple[int, Action]]) -> None:
        if not await self.runtime.aborter.park(flow, seconds=seconds):
            if flow.killable:
                flow.kill()
            return
        later = self._apply(flow, rest)
        if later is not None:
            await later
