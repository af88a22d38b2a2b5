"""/metrics: totals as before, per-device series with a `client` label that leave with the
device, and nothing labelled by URL or host."""

from __future__ import annotations

import re
from pathlib import Path

from wxgate import metrics
from wxgate.devices import Devices

from .addon_helpers import APPID, runtime_for


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_device_series_carry_a_client_label_and_leave_with_the_device(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    clock = Clock()
    runtime.devices = Devices(idle_ms=1000, clock=clock)
    registry = metrics.registry_for(runtime)
    runtime.devices.start("192.168.1.23", APPID, "f1")
    runtime.inflight.force_acquire(("192.168.1.23", APPID, "shared"), "f1")
    runtime.count_violation("192.168.1.24", "domain.not_listed", "error", "blocked")
    text = metrics.render(registry)
    assert (f'wxgate_inflight{{appid="{APPID}",client="192.168.1.23",pool="shared"}} 1.0'
            in text)
    assert ('wxgate_device_violations_total{action="blocked",client="192.168.1.24",'
            'rule="domain.not_listed",severity="error"} 1.0') in text
    assert ('wxgate_violations_total{action="blocked",rule="domain.not_listed",'
            'severity="error"} 1.0') in text
    assert f'wxgate_device_background{{appid="{APPID}",client="192.168.1.23"}} 0.0' in text
    assert "wxgate_devices 2.0" in text

    runtime.inflight.release("f1")
    runtime.devices.end("f1")
    clock.now += 1
    text = metrics.render(registry)
    assert "client=" not in text
    assert "wxgate_devices 0.0" in text and "wxgate_devices_forgotten_total 2.0" in text
    assert ('wxgate_violations_total{action="blocked",rule="domain.not_listed",'
            'severity="error"} 1.0') in text  # the totals stay


def test_labels_are_bounded_names_never_urls(tmp_path: Path):
    runtime = runtime_for(tmp_path)
    runtime.devices.start("192.168.1.23", APPID, "f1")
    runtime.count_violation("192.168.1.23", "domain.not_listed", "error", "blocked")
    labels = set(re.findall(r"(\w+)=\"", metrics.render(metrics.registry_for(runtime))))
    assert "client" in labels
    assert labels <= {"appid", "client", "pool", "rule", "severity", "action", "result"}
