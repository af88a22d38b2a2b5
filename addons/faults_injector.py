"""Carries out the faults (addons/faults): delay, hold until timeout, drop, status.

Faults are not violations: each one applied is logged as a `fault_injected` event.
Runs after the limits, so a delayed call keeps its slot as a slow server would.
"""

from __future__ import annotations

import json
import time

from mitmproxy import http

from . import events
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
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = judgeable(flow)
        # No fault set (the usual case): skip building pretty_url, which cost more than
        # every other judged rule together in the profile of an allowed call.
        # Faults act on wx API calls only, not on media or web-view loads.
        if call is None or call.api not in APIS or not flow.live or not self.runtime.faults.faults:
            return
        client = call.device
        decided = self.runtime.faults.decide(
            call.appid, call.api, flow.request.method, flow.request.pretty_url, client)
        for fault_id, action in decided:
            events.logger().info(
                "fault_injected", fault_id=fault_id, kind=action.kind, appid=call.appid,
                api=call.api, url=flow.request.pretty_url, client=client, flow_id=flow.id,
            )
            if action.drop:
                flow.kill()
                return
            if action.status is not None:
                flow.request.stream = False
                flow.metadata["wxgate_synthetic"] = True
                flow.response = http.Response.make(
                    action.status,
                    json.dumps({"wxgate_fault": fault_id, "status": action.status}).encode(),
                    {"Content-Type": "application/json"},
                )
                return
            if action.delay_s or action.hold:
                seconds = self._until_timeout(flow) if action.hold else action.delay_s
                if not await self.runtime.aborter.park(flow, seconds=seconds):
                    if flow.killable:
                        flow.kill()
                    return
