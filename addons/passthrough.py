"""Tunnels the config's `passthrough` hosts untouched (pinned apps, WeChat's own hosts).

Both the CONNECT target and the SNI must match (SPEC §8): an SNI alone would let a client
tunnel anything to any address by naming a passthrough host in its ClientHello.
"""

from __future__ import annotations

from mitmproxy import tls

from .state import Runtime


class Passthrough:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni or ""
        address = data.context.server.address
        target = str(address[0]) if address else ""
        if sni and target and self._listed(sni) and self._listed(target):
            data.ignore_connection = True

    def _listed(self, host: str) -> bool:
        return any(p.search(host) for p in self.runtime.passthrough)
