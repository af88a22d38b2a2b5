"""The wxgate addons, in enforcement order (`addons/wxgate_addons.py` runs them in mitmdump).

Hook order is list order, so this list is the order in which rules are judged:
refuse clients outside `clients:` and destinations on this machine, answer the control
host, identify the call once (its Call: app, API, hosts, Referer), judge it by the
stateless rules in their order (`policy/call_rules.py`: the named host is the host
connected, the Referer, the URL), refuse calls of a backgrounded app, take a socket place,
start the networkTimeout clock (so time queued counts, as on the phone), take an in-flight
slot, apply faults, and only then point the request at its `resolve` target. The upstream
TLS handshake is judged by the phone's certificate rules (TlsAudit) before any response is
looked at; then a redirect is re-checked, then the response body.
"""

from __future__ import annotations

from .background import Background
from .banner import Banner
from .client_filter import ClientFilter
from .concurrency_limit import ConcurrencyLimit
from .config_loader import ConfigLoader
from .control_api import ControlApi
from .faults_injector import Faults
from .identify import IdentifyApp
from .idle_connections import IdleConnections
from .judge import Judge
from .local_destinations import LocalDestinations
from .long_urls import LongUrls
from .network_timeout import NetworkTimeout
from .passthrough import Passthrough
from .redirect_guard import RedirectGuard
from .resolve import Resolve
from .response_checks import ResponseChecks
from .socket_limit import SocketLimit
from .state import Runtime
from .summary import Summary
from .tls_audit import TlsAudit
from .upstream_pool import UpstreamPool
from .websocket_memory import WebSocketMemory


def make_addons(runtime: Runtime | None = None) -> list[object]:
    runtime = runtime or Runtime()
    background = Background(runtime)
    upstream = UpstreamPool(runtime)
    return [
        ConfigLoader(runtime),
        ClientFilter(runtime),
        LocalDestinations(runtime),
        ControlApi(runtime, background),
        Passthrough(runtime),
        IdleConnections(runtime),
        runtime.aborter,
        IdentifyApp(runtime),
        Judge(runtime),
        background,
        SocketLimit(runtime),
        NetworkTimeout(runtime, upstream),
        ConcurrencyLimit(runtime),
        Faults(runtime),
        Resolve(runtime),
        upstream,
        TlsAudit(runtime),
        RedirectGuard(runtime),
        ResponseChecks(runtime),
        Banner(runtime),
        Summary(runtime),
        WebSocketMemory(),
        LongUrls(),
    ]

