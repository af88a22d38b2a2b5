"""The devices using the proxy (SPEC §3): a device is a client address. What each one has
running, which apps it used and which rules it hit, and when an idle one is forgotten.

Pure: no mitmproxy import, no I/O. A device with nothing running for `idle_ms` (10 minutes
by default, option `wxgate_device_idle_ms`) leaves memory, and with it /status and /metrics,
so that phones coming and going over a long session (or addresses that change) don't pile
up. The limits themselves live in `Slots`, keyed by (device, app, ...), whose entries
vanish when empty.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .policy.exposure import peer_ip

DEFAULT_IDLE_MS = 10 * 60 * 1000
# More devices than a busy office has phones; past it the longest-idle one makes room.
MAX_DEVICES = 4096
# Apps remembered per device (callers name configured apps only; this is a backstop).
MAX_APPS_PER_DEVICE = 64


# Every call names its device, parsed from the peer address; a session has few of them.
@functools.lru_cache(maxsize=MAX_DEVICES)
def device_of(address: str | None) -> str:
    """The device a peer address stands for: IPv4-mapped IPv6 unwrapped, IPv6 compressed,
    so that `::ffff:192.168.1.23` and `192.168.1.23` are one phone."""
    if not address:
        return ""
    ip = peer_ip(address)
    return str(ip) if ip is not None else address


def parse_device(text: str) -> str | None:
    """A device named by a user (`?client=`, a fault's `match.client`): its canonical
    address, or None when `text` is not an IP address."""
    ip = peer_ip(text.strip())
    return str(ip) if ip is not None else None


@dataclass
class Device:
    address: str
    first_seen: float  # wall clock, for people
    last_active: float  # the registry's clock: the last call started or ended
    apps: set[str] = field(default_factory=set)
    # call id -> appid, for every wx call and socket still running
    running: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    # (rule, severity, action) -> count
    violations: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # appid -> when it went to background on this device alone (`?client=`)
    background: dict[str, float] = field(default_factory=dict)
    # apps brought back to foreground here while they stay in background on every other device
    foreground: set[str] = field(default_factory=set)

    def violations_by_rule(self) -> dict[str, int]:
        by_rule: Counter[str] = Counter()
        for (rule, _, _), n in self.violations.items():
            by_rule[rule] += n
        return dict(by_rule.most_common())

    def by_severity(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, severity, _), n in self.violations.items():
            counts[severity] += n
        return counts

    def idle(self) -> bool:
        """Nothing running and no state an operator set (a background named for it)."""
        return not self.running and not self.background and not self.foreground


class Devices:
    """Every device seen and not yet forgotten.

    Invariant: a device with a call running, or in background by name, is never
    forgotten; any other is forgotten once it has been idle `idle_ms` (checked by
    `sweep`, which every read of the registry runs, and a call start or end at most a
    few times a second).
    """

    def __init__(self, idle_ms: int = DEFAULT_IDLE_MS, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, max_devices: int = MAX_DEVICES) -> None:
        self.idle_ms = idle_ms
        self.clock, self.wall = clock, wall
        self.max_devices = max_devices
        self._devices: dict[str, Device] = {}
        self._call_device: dict[str, str] = {}  # running call id -> its device
        self._last_sweep = clock()
        # How many devices were forgotten since the start (for the final summary).
        self.forgotten = 0
        # Told about each device as it is forgotten.
        self.on_forget: Callable[[Device], None] | None = None

    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Iterator[Device]:
        return iter([self._devices[a] for a in sorted(self._devices)])

    def get(self, address: str) -> Device | None:
        return self._devices.get(address)

    def seen(self, address: str, appid: str | None = None) -> Device:
        """The device at `address`, remembered from now on; `appid` is one of its apps."""
        device = self._devices.get(address)
        if device is None:
            now = self.clock()
            self._maybe_sweep(now)
            if len(self._devices) >= self.max_devices:
                self._evict_one()
            device = self._devices[address] = Device(address, self.wall(), now)
        if appid is not None and appid not in device.apps and (
                len(device.apps) < MAX_APPS_PER_DEVICE):
            device.apps.add(appid)
        return device

    def start(self, address: str, appid: str, call_id: str, remember_app: bool = True) -> None:
        """A wx call (or socket) of `appid` started on the device; `remember_app` False for
        an appid that is not a configured app (report mode lets it through)."""
        if call_id in self._call_device:
            return
        device = self.seen(address, appid if remember_app else None)
        device.running[call_id] = appid
        device.calls += 1
        device.last_active = self.clock()
        self._call_device[call_id] = address

    def end(self, call_id: str) -> None:
        """The call ended (response, error, socket closed); idempotent."""
        address = self._call_device.pop(call_id, None)
        device = self._devices.get(address) if address is not None else None
        if device is not None:
            device.running.pop(call_id, None)
            device.last_active = self.clock()
            self._maybe_sweep(device.last_active)

    def running(self, address: str | None = None, appid: str | None = None) -> list[str]:
        """Ids of the calls running on the device (every device when None), of `appid`
        (every app when None)."""
        devices = [self._devices.get(address)] if address is not None else list(
            self._devices.values())
        return [call_id for d in devices if d is not None
                for call_id, app in d.running.items() if appid is None or app == appid]

    def count_violation(self, address: str, rule: str, severity: str, action: str) -> None:
        self.seen(address).violations[(rule, severity, action)] += 1

    def sweep(self) -> list[Device]:
        """Forget every device idle for `idle_ms`; the devices forgotten."""
        now = self.clock()
        self._last_sweep = now
        idle_s = self.idle_ms / 1000
        gone = [d for d in self._devices.values()
                if d.idle() and now - d.last_active >= idle_s]
        for device in gone:
            self._forget(device)
        return gone

    def _maybe_sweep(self, now: float) -> None:
        # Often enough to keep memory flat under churn, rarely enough to cost nothing.
        if now - self._last_sweep >= min(self.idle_ms / 4000, 1.0):
            self.sweep()

    def _evict_one(self) -> None:
        idle = [d for d in self._devices.values() if d.idle()]
        if idle:
            self._forget(min(idle, key=lambda d: d.last_active))

    def _forget(self, device: Device) -> None:
        del self._devices[device.address]
        self.forgotten += 1
        if self.on_forget is not None:
            self.on_forget(device)
