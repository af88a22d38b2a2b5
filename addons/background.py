"""Background: after an app goes to background, WeChat fails what is still running
`background_grace_s` later ("fail interrupted") and every new call at once.

Driven by the control API (`POST /apps/{appid}/background` / `foreground`) and by
scheduled windows in the config (`faults: - background: {appid, after_s, for_s}`).
Open sockets are closed the same way.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from . import events
from .policy.rules import APIS, Violation
from .state import Runtime
from .verdict import enforce, fail_closed, info_of, interrupt, judgeable


class Background:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # appid -> flow id -> flow: calls and sockets of that app still running
        self._running: dict[str, dict[str, http.HTTPFlow]] = {}
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._windows: list[asyncio.TimerHandle] = []

    def running(self) -> None:
        loop = asyncio.get_running_loop()
        for window in self.runtime.config.background_windows:
            self._windows.append(loop.call_later(
                window.after_s, self.go_background, window.appid, "scheduled"))
            self._windows.append(loop.call_later(
                window.after_s + window.for_s, self.go_foreground, window.appid, "scheduled"))

    def done(self) -> None:
        for handle in [*self._windows, *self._pending.values()]:
            handle.cancel()

    def go_background(self, appid: str, by: str = "control") -> None:
        if appid in self.runtime.background:
            return
        self.runtime.background[appid] = time.time()
        grace = self.runtime.config.limits.background_grace_s
        events.logger().info("app_background", appid=appid, by=by, grace_s=grace)
        self._pending[appid] = asyncio.get_running_loop().call_later(
            grace, self._interrupt, appid)

    def go_foreground(self, appid: str, by: str = "control") -> None:
        handle = self._pending.pop(appid, None)
        if handle is not None:
            handle.cancel()
        if self.runtime.background.pop(appid, None) is not None:
            events.logger().info("app_foreground", appid=appid, by=by)

    def _interrupt(self, appid: str) -> None:
        self._pending.pop(appid, None)
        grace = self.runtime.config.limits.background_grace_s
        for flow in list(self._running.get(appid, {}).values()):
            info = info_of(flow)
            interrupt(flow, Violation(
                "background.interrupted",
                f"still running {grace} s after {appid} went to background", info.api,
            ), self.runtime)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        info = judgeable(flow)
        if info is None or info.appid is None or info.api not in APIS:  # wx calls only
            return
        since = self.runtime.background.get(info.appid)
        if since is not None:
            enforce(flow, Violation(
                "background.blocked",
                f"started {time.time() - since:.1f} s after {info.appid} went to background",
                info.api,
            ), self.runtime)
            return
        if flow.live:
            self._running.setdefault(info.appid, {})[flow.id] = flow

    def _finished(self, flow: http.HTTPFlow) -> None:
        appid = info_of(flow).appid
        running = self._running.get(appid or "")
        if running is not None:
            running.pop(flow.id, None)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:
            self._finished(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)
