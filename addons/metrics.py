"""`GET /metrics` on the control API: Prometheus text format, with the standard client.

A custom collector reads the Runtime's counters at scrape time, so the request path
pays nothing for metrics. Each Runtime has its own registry (no global state).
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
        inflight = GaugeMetricFamily("wxgate_inflight", "In-flight calls per app and pool.",
                                     labels=["appid", "pool"])
        for (appid, pool), n in sorted(rt.inflight.counts().items()):
            inflight.add_metric([str(appid), str(pool)], n)
        yield inflight
        sockets = GaugeMetricFamily("wxgate_sockets_open", "Open WebSockets per app.",
                                    labels=["appid"])
        for appid, n in sorted(rt.sockets.counts().items()):
            sockets.add_metric([str(appid)], n)
        yield sockets
        background = GaugeMetricFamily("wxgate_app_background", "1 while the app is in "
                                       "background.", labels=["appid"])
        for app in rt.config.apps:
            background.add_metric([app.appid], 1 if app.appid in rt.background else 0)
        yield background
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
