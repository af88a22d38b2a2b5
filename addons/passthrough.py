"""Tunnels the config's `passthrough` hosts untouched (pinned apps, WeChat's own hosts)."""

from __future__ import annotations

from mitmproxy import tls

from .state import Runtime


class Passthrough:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni or ""
        if sni and any(p.search(sni) for p in self.runtime.passthrough):
            data.ignore_connection = True
