"""The control API, served by the proxy itself on the host `wxgate.local` (SPEC §7).

JSON in and out. A caller that is not on loopback must send
`Authorization: Bearer <control.token>`; without a configured token only loopback
may use it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from mitmproxy import http

from . import events
from .state import Runtime

CONTROL_HOST = "wxgate.local"


def _loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


class ControlApi:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def status(self) -> dict[str, Any]:
        config = self.runtime.config
        inflight = self.runtime.inflight.counts()
        apps = {}
        for app in config.apps:
            pools = {pool: n for (appid, pool), n in inflight.items() if appid == app.appid}
            apps[app.appid] = {
                "version": app.version,
                "inflight": sum(pools.values()),
                "inflight_by_pool": pools,
                "sockets": self.runtime.sockets.in_use(app.appid),
            }
        return {
            "mode": self.runtime.mode,
            "config": config.source,
            "apps": apps,
            "flows": self.runtime.flows,
            "blocked": self.runtime.blocked,
            "violations": dict(self.runtime.violations),
        }

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host.lower() != CONTROL_HOST or flow.response is not None:
            return
        flow.metadata["wxgate_control"] = True
        if not self._authorized(flow):
            events.logger().warning(
                "control_refused", client=flow.client_conn.peername[0],
                path=flow.request.path,
            )
            self._reply(flow, 401, {"error": "control API needs Authorization: Bearer <token> "
                                             "from anything but loopback"})
            return
        method, path = flow.request.method, flow.request.path.split("?")[0]
        if method == "GET" and path == "/status":
            self._reply(flow, 200, self.status())
        else:
            self._reply(flow, 404, {"error": f"no such endpoint: {method} {path}"})

    def _authorized(self, flow: http.HTTPFlow) -> bool:
        if _loopback(flow.client_conn.peername):
            return True
        token = self.runtime.config.control_token
        sent = flow.request.headers.get("authorization", "")
        return bool(token) and hmac.compare_digest(sent, f"Bearer {token}")

    @staticmethod
    def _reply(flow: http.HTTPFlow, status: int, body: dict[str, Any]) -> None:
        flow.request.stream = False
        flow.response = http.Response.make(
            status, json.dumps(body, indent=2).encode(), {"Content-Type": "application/json"})
