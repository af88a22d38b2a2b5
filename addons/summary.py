"""The operator's view on the terminal: a live one-line summary while running (only on
a TTY), and a final summary on exit (always). Both break the counts down by device (a
client address): the live line names the busiest two, the final summary every one."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from .devices import Device
from .events import CONSOLE
from .state import Runtime

INTERVAL_S = 1.0
# Devices the live line names; it must stay one line.
LIVE_DEVICES = 2


def _inflight_by_device(runtime: Runtime) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (device, _, _), n in runtime.inflight.counts().items():
        counts[str(device)] += n
    return counts


def _device_brief(device: Device, inflight: int) -> str:
    errors = device.by_severity()["error"]
    parts = [f"{inflight} in flight"] if inflight else []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    return f"{device.address} ({', '.join(parts)})" if parts else device.address


def summary_line(runtime: Runtime) -> str:
    """flows | blocked | violations | devices (the busiest two named) | in flight.

    The device breakdown sits in the middle: a narrow terminal cuts the middle of the line.
    """
    by_severity: Counter[str] = Counter()
    for (_, severity, _), n in runtime.violation_counts.items():
        by_severity[severity] += n
    inflight = _inflight_by_device(runtime)
    parts = [f"flows {runtime.flows}", f"blocked {runtime.blocked}",
             f"violations: {by_severity['error']} error, {by_severity['warning']} warning, "
             f"{by_severity['info']} info"]
    devices = list(runtime.devices)
    if devices:
        busiest = sorted(devices, key=lambda d: (-inflight[d.address],
                                                 -d.by_severity()["error"], d.address))
        named = ", ".join(_device_brief(d, inflight[d.address])
                          for d in busiest[:LIVE_DEVICES])
        more = f" +{len(devices) - LIVE_DEVICES}" if len(devices) > LIVE_DEVICES else ""
        parts.append(f"devices {len(devices)}: {named}{more}")
    parts.append(f"in flight {sum(inflight.values())}")
    return " | ".join(parts)


def final_summary(runtime: Runtime) -> list[str]:
    lines = [f"wxgate summary: {summary_line(runtime)}"]
    for rule, n in runtime.violations.most_common():
        lines.append(f"  {rule}: {n}")
    devices = list(runtime.devices)
    if devices or runtime.devices.forgotten:
        forgotten = (f" ({runtime.devices.forgotten} more forgotten after "
                     f"{runtime.devices.idle_ms // 1000} s idle)"
                     if runtime.devices.forgotten else "")
        lines.append(f"by device{forgotten}:")
    for device in devices:
        rules = ", ".join(f"{rule} {n}" for rule, n in device.violations_by_rule().items())
        calls = f"{device.calls} call{'s' if device.calls != 1 else ''}"
        lines.append(f"  {device.address}: {calls}; {rules or 'no violations'}")
    return lines


class Summary:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task[None] | None = None

    def running(self) -> None:
        if sys.stderr.isatty() and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._live())

    async def _live(self) -> None:
        while True:
            self.runtime.devices.sweep()
            # The console clears it before any other line is printed and redraws it after.
            CONSOLE.status(summary_line(self.runtime))
            await asyncio.sleep(INTERVAL_S)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            CONSOLE.clear_status()
        for line in final_summary(self.runtime):
            print(line, flush=True)
