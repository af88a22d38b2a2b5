"""Ending a live flow from outside its hooks (timeouts, background interruption).

`flow.kill()` only acts when a hook returns, so it can't abort a flow that waits on
the upstream (mitmproxy issue 4711) nor close a WebSocket (issue 4773). This module
is the one place that reaches into mitmproxy's connection handler for that, through
`proxyserver.connections[client id]`, the same on mitmproxy 11 and 12:

- a flow parked in one of wxgate's own async hooks (queued for a slot, delayed by
  a fault) is woken and killed there: the cleanest case;
- a flow waiting on its upstream has its *server* connection closed; mitmproxy then
  fires `error` for it, and `FlowAborter.error` kills the flow so that mitmproxy
  sends no 502: an HTTP/1 client sees the connection close, an HTTP/2 client sees
  only that stream reset while its other streams go on;
- anything else (a WebSocket, a flow still connecting upstream) has its *client*
  connection closed: the client sees EOF (1006 on a WebSocket). On HTTP/2 this
  ends every stream of that client connection; mitmproxy offers no way to reset a
  single stream from outside a hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from mitmproxy import connection, ctx, http

from . import events

T = TypeVar("T")
ABORTED = "wxgate_aborted"


class FlowAborter:
    def __init__(self) -> None:
        # flow id -> future that wakes the flow's parked hook
        self._parked: dict[str, asyncio.Future[None]] = {}

    async def park(self, flow: http.HTTPFlow, waiting: Awaitable[T] | None = None,
                   seconds: float | None = None) -> bool:
        """Wait (for `waiting`, or `seconds`) abortably; False when the flow was aborted.

        The caller must then `flow.kill()` (it is still inside its hook).
        """
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked[flow.id] = wake
        task = asyncio.ensure_future(waiting) if waiting is not None else None
        try:
            pending = [wake] + ([task] if task else [])
            await asyncio.wait(pending, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            if wake.done():
                if task is not None:
                    task.cancel()
                return False
            return True
        finally:
            self._parked.pop(flow.id, None)
            if not wake.done():
                wake.cancel()

    def abort(self, flow: http.HTTPFlow | Any, reason: str) -> str:
        """End the flow as a network failure at the client; says how it was done."""
        flow.metadata[ABORTED] = reason
        parked = self._parked.get(flow.id)
        if parked is not None and not parked.done():
            parked.set_result(None)
            return "woken"
        handler = connection_handler(flow.client_conn)
        if handler is None:
            return "gone"
        server = flow.server_conn
        websocket = isinstance(flow, http.HTTPFlow) and flow.websocket is not None
        if not websocket and server is not None and server.connected and _owns(handler, server):
            handler.close_connection(server)
            return "upstream closed"
        if _owns(handler, flow.client_conn):
            handler.close_connection(flow.client_conn)
            return "client closed"
        return "gone"

    def error(self, flow: http.HTTPFlow) -> None:
        # Our own close of the upstream connection: kill instead of letting mitmproxy
        # answer 502, so the client fails the way the phone does.
        if flow.metadata.get(ABORTED) and flow.killable:
            flow.kill()


def close_client(client: connection.Client) -> bool:
    """Close a client connection that has no flow to kill (idle, half-open, or a killed
    HTTP/1 upload mitmproxy would leave hanging); False when it is gone already."""
    handler = connection_handler(client)
    if handler is None or not _owns(handler, client):
        return False
    writer = handler.transports[client].writer
    handler.close_connection(client)
    # Cancelling the connection's task does not always reach its own close (a task parked
    # behind a killed HTTP/1 upload is cancelled past it): close the socket as well.
    if writer is not None and not writer.is_closing():
        writer.close()
    return True


def close_client_soon(client: connection.Client) -> None:
    """`close_client` once the running hook has returned (a no-op offline)."""
    try:
        asyncio.get_running_loop().call_soon(close_client, client)
    except RuntimeError:
        pass


def connection_handler(client: connection.Client) -> Any:
    """The proxyserver's live handler of this client connection, or None (offline)."""
    try:
        proxyserver = ctx.master.addons.get("proxyserver")
    except Exception:  # noqa: BLE001 - no master (offline audit): nothing live to close
        return None
    if proxyserver is None:
        return None
    return proxyserver.connections.get(client.id)


def _owns(handler: Any, conn: connection.Connection) -> bool:
    try:
        return conn in handler.transports
    except Exception as exc:  # noqa: BLE001 - internal API: log, treat as not ours
        events.logger().error("wxgate_error", where="abort", error=repr(exc))
        return False
