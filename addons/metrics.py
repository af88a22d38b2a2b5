"""`GET /metrics` on the control API: Prometheus text format, with the standard client.

A custom collector reads the Runtime's counters at scrape time, so the request path
pays nothing for metrics. Each Runtime has its own registry (no global state).

Per-device series carry a `client` label (the device's address). Their number is
bounded: one per device seen and not yet forgotten (`wxgate_device_idle_ms`), times the
configured apps and rule ids; no label ever carries a URL or a host.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .state import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        yield CounterMetricFamily("wxgate_flows", "Flows seen by wxgate.", value=rt.flows)
        yield CounterMetricFamily("wxgate_blocked", "Flows wxgate blocked.", value=rt.blocked)
        violations = CounterMetricFamily("wxgate_violations", "Violations by rule.",
                                         labels=["rule", "severity", "action"])
        for (rule, severity, action), n in sorted(rt.violation_counts.items()):
            violations.add_metric([rule, severity, action], n)
        yield violations
        devices = rt.devices
        devices.sweep()
        inflight = GaugeMetricFamily("wxgate_inflight", "In-flight calls per device, app "
                                     "and pool.", labels=["client", "appid", "pool"])
        for (client, appid, pool), n in sorted(rt.inflight.counts().items()):
            inflight.add_metric([str(client), str(appid), str(pool)], n)
        yield inflight
        sockets = GaugeMetricFamily("wxgate_sockets_open", "Open WebSockets per device and "
                                    "app.", labels=["client", "appid"])
        for (client, appid), n in sorted(rt.sockets.counts().items()):
            sockets.add_metric([str(client), str(appid)], n)
        yield sockets
        background = GaugeMetricFamily("wxgate_app_background", "1 while the app is in "
                                       "background on every device.", labels=["appid"])
        for app in rt.config.apps:
            background.add_metric([app.appid], 1 if app.appid in rt.background else 0)
        yield background
        on_device = GaugeMetricFamily("wxgate_device_background", "1 while the app is in "
                                      "background on the device.", labels=["client", "appid"])
        calls = CounterMetricFamily("wxgate_device_calls", "wx calls and sockets started, "
                                    "per device.", labels=["client"])
        by_device = CounterMetricFamily("wxgate_device_violations", "Violations by device "
                                        "and rule.",
                                        labels=["client", "rule", "severity", "action"])
        for device in devices:
            calls.add_metric([device.address], device.calls)
            for appid in sorted(device.apps | set(device.background)):
                since = rt.background_since(device.address, appid)
                on_device.add_metric([device.address, appid], 0 if since is None else 1)
            for (rule, severity, action), n in sorted(device.violations.items()):
                by_device.add_metric([device.address, rule, severity, action], n)
        yield on_device
        yield calls
        yield by_device
        yield GaugeMetricFamily("wxgate_devices", "Devices seen and not yet forgotten.",
                                value=len(devices))
        yield CounterMetricFamily("wxgate_devices_forgotten", "Devices forgotten after "
                                  "wxgate_device_idle_ms with nothing in flight.",
                                  value=devices.forgotten)
        tls = CounterMetricFamily("wxgate_tls_audits", "Upstream TLS audits by result.",
                                  labels=["result"])
        for result, n in sorted(rt.tls_audits.items()):
            tls.add_metric([result], n)
        yield tls


def registry_for(runtime: Runtime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(runtime))
    return registry


def render(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()
