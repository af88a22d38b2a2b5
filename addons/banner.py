"""Prints where the proxy listens, how to point a phone at it, a line per app, and what
wxgate could not read in a project (the config's warnings)."""

from __future__ import annotations

import sys
from pathlib import Path

from mitmproxy import ctx

from .netinfo import lan_addresses
from .policy.config import Config
from .policy.rules import APIS
from .state import Runtime


def banner_lines(config: Config, mode: str, listen: list[tuple[str, int]],
                 log_path: str | None) -> list[str]:
    lines = [f"wxgate: mode {mode}, block_with {config.block_with}, scope {config.scope}, "
             f"config {config.source}"]
    ports = sorted({port for _, port in listen})
    for host, port in listen:
        lines.append(f"wxgate proxy listening on {host or '*'}:{port}")
    if Path("/.dockerenv").exists():
        lines.append("  in Docker: point the phone at this host's LAN address and the "
                     "published port")
    else:
        for addr in lan_addresses():
            for port in ports:
                lines.append(f"  phone Wi-Fi proxy: {addr} port {port}")
    lines.append("  CA: with the proxy set, open http://mitm.it on the phone and install the "
                 "certificate (iOS: also enable full trust; Android: WeChat 7+ trusts only "
                 "system CAs)")
    for app in config.apps:
        counts = " ".join(f"{api} {len(app.domains.get(api, ()))}" for api in APIS)
        timeouts = "/".join(str(app.network_timeout[api]) for api in APIS)
        line = (f"  app {app.appid} v{app.version}: domains {counts}; "
                f"timeouts ms {timeouts}; mode {mode}")
        if app.url_check is False:
            line += ("; project has urlCheck off: DevTools is not checking domains, "
                     "TLS or certificates, wxgate is the only check")
        lines.append(line)
    if not config.apps:
        lines.append("  no apps configured: mini-program traffic is not judged")
    # A project before its build: the timeouts are the defaults, and the banner says so.
    lines += [f"  {warning}" for warning in config.warnings]
    if log_path:
        lines.append(f"  violation log: {log_path}")
    return lines


class Banner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._shown = False

    def running(self) -> None:
        if self._shown:
            return
        self._shown = True
        proxyserver = ctx.master.addons.get("proxyserver")
        listen = [(str(a[0]), int(a[1])) for a in proxyserver.listen_addrs()]
        from .events import SINK

        path = str(SINK.path) if SINK.path else None
        for line in banner_lines(self.runtime.config, self.runtime.mode, listen, path):
            print(line, file=sys.stdout, flush=True)
