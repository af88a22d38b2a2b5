"""Refuses clients outside `clients:` at connect (SPEC §8), in place of mitmproxy's block_global.

The default admits loopback and the private ranges: the phones on the office Wi-Fi and
DevTools on this machine. A refused address is logged once, not once per connection.
"""

from __future__ import annotations

from collections.abc import Set

from mitmproxy import connection, ctx

from . import events
from .policy.exposure import client_allowed
from .state import Runtime

# Enough for every device of a busy office; past it a hostile scan is not logged forever.
MAX_LOGGED = 4096


class ClientFilter:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._logged: set[str] = set()

    def configure(self, updated: Set[str]) -> None:
        # `clients:` decides who may connect; mitmproxy's block_global would refuse public
        # addresses even where `clients:` admits them.
        if "block_global" in updated and getattr(ctx.options, "block_global", False):
            ctx.options.update(block_global=False)

    def client_connected(self, client: connection.Client) -> None:
        address = str(client.peername[0]) if client.peername else ""
        try:
            allowed = client_allowed(address, self.runtime.config.clients)
        except Exception as exc:  # noqa: BLE001 - fail closed: a bug must not open the proxy
            events.logger().error("wxgate_error", hook="ClientFilter.client_connected",
                                  error=f"{type(exc).__name__}: {exc}", client=address)
            allowed = False
        if allowed:
            return
        client.error = f"wxgate: client {address} is not in clients:"
        if address not in self._logged and len(self._logged) < MAX_LOGGED:
            self._logged.add(address)
            events.logger().warning(
                "refused", reason="client_not_allowed", client=address,
                detail=f"{address} is not in clients: (config {self.runtime.config.source}); "
                       "further connections from it are refused silently",
            )
