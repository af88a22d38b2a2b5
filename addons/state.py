"""What the addons share: the loaded policy and per-flow verdict bookkeeping.

One `Runtime` is made by `pipeline.make_addons` and handed to every addon, so that
the addon list, not a global, says who sees what.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import events
from .abort import FlowAborter
from .devices import Device, Devices, device_of
from .faults import FaultSet
from .policy.call import UNIDENTIFIED, Call
from .policy.config import Config
from .slots import Slots

META = "wxgate"
# (name, port) the client asked for, before `resolve` pointed the request elsewhere
RESOLVED_FROM = "wxgate_resolved_from"
# The Referer header as the client sent it (None: none), before wxgate rewrote it
REFERER_SENT = "wxgate_referer_sent"


def device_of_flow(flow: Any) -> str:
    """The device a flow comes from: its client connection's address (SPEC §3)."""
    peer = flow.client_conn.peername
    return device_of(str(peer[0]) if peer else None)


@dataclass(slots=True)
class FlowInfo:
    """What wxgate knows and decided about one flow (see `verdict.info_of`): the Call
    IdentifyApp made of it, and the verdict so far.

    Held beside the flow, not in `flow.metadata`: metadata is saved with the flow
    (`-w`, mitmweb's save) and must stay plain data; `summary()` is what goes there.
    """

    # UNIDENTIFIED until IdentifyApp has seen the flow (and for mitm.it and the control host).
    call: Call = UNIDENTIFIED
    # allowed | reported | blocked
    decision: str = "allowed"
    rules: list[str] = field(default_factory=list)
    # The flow was live when wxgate first saw it (see `verdict.answered`).
    seen_live: bool = False

    def summary(self) -> dict[str, object]:
        call = self.call
        return {"appid": call.appid, "app_version": call.app_version, "api": call.api,
                "platform": call.platform, "decision": self.decision, "rules": list(self.rules)}


@dataclass
class Runtime:
    config: Config = field(default_factory=Config)
    # `wxgate_mode` overrides the config's mode (Docker's WXGATE_MODE).
    mode_override: str = ""
    passthrough: list[re.Pattern[str]] = field(default_factory=list)
    violations: Counter[str] = field(default_factory=Counter)
    # (rule, severity, action) -> count, for /metrics and the summaries
    violation_counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # TLS audits of upstream connections by result ("pass", "fail")
    tls_audits: Counter[str] = field(default_factory=Counter)
    # In-flight request/uploadFile/downloadFile per (device, appid, pool); open sockets per
    # (device, appid). A device is a client address (`devices.device_of`).
    inflight: Slots = field(default_factory=Slots)
    sockets: Slots = field(default_factory=Slots)
    aborter: FlowAborter = field(default_factory=FlowAborter)
    faults: FaultSet = field(default_factory=FaultSet)
    # appid -> wall-clock time it went to background on every device (no `?client=`); one
    # device's own background state is on its `Device` (`background`, `foreground`).
    background: dict[str, float] = field(default_factory=dict)
    devices: Devices = field(default_factory=Devices)
    blocked: int = 0
    flows: int = 0

    def __post_init__(self) -> None:
        self.devices.on_forget = self._device_forgotten

    @property
    def mode(self) -> str:
        return self.mode_override or self.config.mode

    def background_since(self, device: str, appid: str) -> float | None:
        """When `appid` went to background on `device`, or None while it is in foreground
        there: its own background first, then the app's on every device unless this
        device was brought back to foreground alone."""
        own = self.devices.get(device)
        if own is not None:
            if appid in own.background:
                return own.background[appid]
            if appid in own.foreground:
                return None
        return self.background.get(appid)

    def count_violation(self, client: str | None, rule: str, severity: str,
                        action: str) -> None:
        """One violation, in the totals and in its device's counts."""
        self.violations[rule] += 1
        self.violation_counts[(rule, severity, action)] += 1
        if client:
            self.devices.count_violation(device_of(client), rule, severity, action)

    def _device_forgotten(self, device: Device) -> None:
        self.faults.forget(device.address)
        events.logger().info(
            "device_forgotten", client=device.address,
            idle_s=round(self.devices.clock() - device.last_active), calls=device.calls,
            violations=device.violations_by_rule())

    def install(self, config: Config) -> None:
        self.config = config
        self.faults = FaultSet(list(config.faults), config.seed)
        self.passthrough = [re.compile(p, re.IGNORECASE) for p in config.passthrough]
