"""The wxgate addons, in enforcement order: `mitmdump -s addons/wxgate.py`.

Hook order is list order, so this list is the order in which rules are judged:
refuse clients outside `clients:` and destinations on this machine, answer the control
host, identify the app and API, refuse a call whose named host is not the host connected,
check the Referer, judge the URL, refuse calls of a backgrounded app, take a socket place,
start the networkTimeout clock (so time queued counts, as on the phone), take an in-flight
slot, apply faults, and only then point the request at its `resolve` target. The upstream
TLS handshake is judged by the phone's certificate rules (TlsAudit) before any response is
looked at; then a redirect is re-checked, then the response body.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("addons") is None:
    # Run as a script from a checkout where wxgate is not installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addons.background import Background
from addons.banner import Banner
from addons.client_filter import ClientFilter
from addons.concurrency_limit import ConcurrencyLimit
from addons.config_loader import ConfigLoader
from addons.control_api import ControlApi
from addons.domain_guard import DomainGuard
from addons.faults_injector import Faults
from addons.host_match import HostMatch
from addons.identify import IdentifyApp
from addons.idle_connections import IdleConnections
from addons.local_destinations import LocalDestinations
from addons.long_urls import LongUrls
from addons.network_timeout import NetworkTimeout
from addons.passthrough import Passthrough
from addons.redirect_guard import RedirectGuard
from addons.referer_guard import RefererGuard
from addons.resolve import Resolve
from addons.response_checks import ResponseChecks
from addons.socket_limit import SocketLimit
from addons.state import Runtime
from addons.summary import Summary
from addons.tls_audit import TlsAudit
from addons.upstream_pool import UpstreamPool
from addons.websocket_memory import WebSocketMemory


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
        HostMatch(runtime),
        RefererGuard(runtime),
        DomainGuard(runtime),
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


addons = make_addons()
