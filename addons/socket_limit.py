"""At most `limits.sockets` open connectSocket WebSockets per app on one device (a client
address: SPEC §3).

The place is taken when the upgrade is judged (so two upgrades racing for the last
place can't both win) and given back when the socket closes, the upgrade is
refused, or the flow errors.
"""

from __future__ import annotations

from mitmproxy import http

from .policy.rules import Violation
from .state import Runtime
from .verdict import enforce, fail_closed, judgeable


class SocketLimit:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = judgeable(flow)
        if call is None or call.api != "connectSocket":
            return
        limit = self.runtime.config.limits.sockets
        sockets = self.runtime.sockets
        device = call.device
        key = (device, call.appid)
        if sockets.try_acquire(key, flow.id, limit):
            return
        detail = f"{sockets.in_use(key)} sockets already open for {call.appid} on {device} " \
                 f"(limit {limit} per device)"
        if not enforce(flow, Violation("socket.exceeded", detail, "connectSocket"),
                       self.runtime):
            sockets.force_acquire(key, flow.id)  # report mode: counted, let through

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.status_code != 101:
            self.runtime.sockets.release(flow.id)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.runtime.sockets.release(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None or flow.websocket.timestamp_end is not None:
            self.runtime.sockets.release(flow.id)
