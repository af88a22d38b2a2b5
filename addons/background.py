"""Background: after an app goes to background on a phone, WeChat fails what is still
running there `background_grace_s` later ("fail interrupted") and every new call at once.

Background state is per (device, app) (SPEC §3): `POST /apps/{appid}/background?client=ADDR`
sends the app to background on that device alone; without `?client=` on every device,
including devices that start it later, until the app comes back to foreground
(everywhere, or on one device by `?client=`). Scheduled windows in the config
(`faults: - background: {appid, after_s, for_s, client}`) do the same. Open sockets are
closed the same way.

This addon also tells the device registry (`Runtime.devices`) which wx calls and sockets
are running on which device: a device with nothing running for `wxgate_device_idle_ms`
is forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Set

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from . import events
from .abort import ABORTED
from .devices import DEFAULT_IDLE_MS
from .policy.rules import APIS, Violation
from .state import Runtime
from .verdict import enforce, fail_closed, info_of, interrupt, judgeable

# The key of the app's own state in `_pending`: every device.
EVERY_DEVICE = None


class Background:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # flow id -> flow: wx calls and sockets still running (which device runs which:
        # runtime.devices)
        self._running: dict[str, http.HTTPFlow] = {}
        # (device, or EVERY_DEVICE, appid) -> the timer that interrupts at the grace deadline
        self._pending: dict[tuple[str | None, str], asyncio.TimerHandle] = {}
        self._windows: list[asyncio.TimerHandle] = []

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "wxgate_device_idle_ms", int, DEFAULT_IDLE_MS,
            "Forget a device (a client address: its counts, in /status and /metrics) after "
            "this many milliseconds with nothing in flight.")

    def configure(self, updated: Set[str]) -> None:
        if "wxgate_device_idle_ms" in updated:
            idle_ms = ctx.options.wxgate_device_idle_ms
            if idle_ms < 1:
                raise exceptions.OptionsError(
                    f"wxgate_device_idle_ms must be at least 1, not {idle_ms}")
            self.runtime.devices.idle_ms = idle_ms

    def running(self) -> None:
        loop = asyncio.get_running_loop()
        for window in self.runtime.config.background_windows:
            self._windows.append(loop.call_later(
                window.after_s, self.go_background, window.appid, "scheduled", window.client))
            self._windows.append(loop.call_later(
                window.after_s + window.for_s, self.go_foreground, window.appid, "scheduled",
                window.client))

    def done(self) -> None:
        for handle in [*self._windows, *self._pending.values()]:
            handle.cancel()

    def go_background(self, appid: str, by: str = "control", device: str | None = None) -> None:
        """Send `appid` to background on `device`, or on every device when None."""
        grace = self.runtime.config.limits.background_grace_s
        if device is None:
            if appid in self.runtime.background:
                # Already in background everywhere: devices brought back alone follow.
                for entry in list(self.runtime.devices):
                    if appid in entry.foreground:
                        self.go_background(appid, by, entry.address)
                return
            self.runtime.background[appid] = time.time()
        else:
            if self.runtime.background_since(device, appid) is not None:
                return
            entry = self.runtime.devices.seen(device, appid)
            entry.foreground.discard(appid)
            entry.background[appid] = time.time()
        events.logger().info("app_background", appid=appid, client=device, by=by,
                             grace_s=grace)
        self._pending[(device, appid)] = asyncio.get_running_loop().call_later(
            grace, self._interrupt, device, appid)

    def go_foreground(self, appid: str, by: str = "control", device: str | None = None) -> None:
        """Bring `appid` back to foreground on `device`, or on every device when None."""
        if device is None:
            changed = self.runtime.background.pop(appid, None) is not None
            self._cancel(EVERY_DEVICE, appid)
            for entry in self.runtime.devices:
                changed = entry.background.pop(appid, None) is not None or changed
                self._cancel(entry.address, appid)
                entry.foreground.discard(appid)
        else:
            changed = self.runtime.background_since(device, appid) is not None
            own = self.runtime.devices.get(device)
            if own is not None:
                own.background.pop(appid, None)
            self._cancel(device, appid)
            if appid in self.runtime.background:
                # The app stays in background on every other device.
                self.runtime.devices.seen(device, appid).foreground.add(appid)
        if changed:
            events.logger().info("app_foreground", appid=appid, client=device, by=by)

    def _cancel(self, device: str | None, appid: str) -> None:
        handle = self._pending.pop((device, appid), None)
        if handle is not None:
            handle.cancel()

    def _interrupt(self, device: str | None, appid: str) -> None:
        self._pending.pop((device, appid), None)
        grace = self.runtime.config.limits.background_grace_s
        where = device or "every device"
        # On every device, those with a state of their own for the app decide for themselves.
        targets = [device] if device is not None else [
            d.address for d in self.runtime.devices
            if appid not in d.background and appid not in d.foreground]
        for address in targets:
            for call_id in self.runtime.devices.running(address, appid):
                flow = self._running.get(call_id)
                if flow is None or flow.metadata.get(ABORTED):
                    continue
                interrupt(flow, Violation(
                    "background.interrupted",
                    f"still running {grace} s after {appid} went to background on {where}",
                    info_of(flow).call.api,
                ), self.runtime)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = judgeable(flow)
        if call is None or call.appid is None or call.api not in APIS:  # wx calls only
            return
        device = call.device
        since = self.runtime.background_since(device, call.appid)
        if since is not None and enforce(flow, Violation(
            "background.blocked",
            f"started {time.time() - since:.1f} s after {call.appid} went to background "
            f"on {device}",
            call.api,
        ), self.runtime):
            return
        if not flow.live:
            return
        # Running on the device (in report mode a call only reported as blocked, too), and
        # to be interrupted at a grace deadline unless it was already judged.
        self.runtime.devices.start(device, call.appid, flow.id,
                                   remember_app=call.app is not None)
        if since is None:
            self._running[flow.id] = flow

    def _finished(self, flow: http.HTTPFlow) -> None:
        self._running.pop(flow.id, None)
        self.runtime.devices.end(flow.id)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:
            self._finished(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)
