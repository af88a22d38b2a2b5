"""The control API (SPEC §7): on the host `wxgate.local` through the proxy, and on
`--control-port` (option `wxgate_control_port`) on loopback. JSON in and out.

A caller that is not on loopback must send `Authorization: Bearer <control.token>`;
with no token configured, only loopback may use it. Loopback here means the proxy's own
TCP peer at 127.0.0.1 or ::1 exactly, so that another 127.x source address stands in for a
LAN caller (and LocalDestinations keeps the proxy from carrying anyone to the control port).
A call that changes state must be JSON and must not come from a web page (no `Origin`), so
a page open in a browser that uses the proxy cannot forge one.

Background and foreground take `?client=ADDR` to name one device (a client address, as
`GET /status` lists the devices); without it they apply to every device running the app.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http.status_codes import RESPONSES

from . import events
from .background import Background
from .devices import parse_device
from .faults import BackgroundWindow, parse_fault
from .policy.call import UNIDENTIFIED
from .policy.exposure import is_loopback_peer
from .raw_headers import host_header
from .state import Runtime
from .verdict import announced_body, info_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

CONTROL_HOST = "wxgate.local"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_APP_ACTION = re.compile(r"^/apps/(?P<appid>[^/]+)/(?P<action>background|foreground)$")
_FAULT_ID = re.compile(r"^/faults/(?P<id>\d+)$")


@dataclass
class ApiCall:
    """One call to the control API, through the proxy or on the control port."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercased names
    body: bytes
    client: str


def _cross_origin(call: ApiCall) -> str | None:
    """Why a state-changing call is refused as possibly forged by a web page, or None."""
    if "origin" in call.headers:
        return "calls that change state are refused when they carry an Origin header " \
               "(a web page); use wxgate ctl or curl"
    content_type = call.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "calls that change state need Content-Type: application/json"
    return None


def _encode(payload: dict[str, Any] | str) -> tuple[str, bytes]:
    """JSON for the API's answers; Prometheus text for /metrics."""
    if isinstance(payload, str):
        from .metrics import CONTENT_TYPE
        return CONTENT_TYPE, payload.encode()
    return "application/json", json.dumps(payload, indent=2, default=str).encode()


class ControlApi:
    def __init__(self, runtime: Runtime, background: Background) -> None:
        self.runtime = runtime
        self.background = background
        # Made at the first scrape: the Prometheus client is imported only then, so that
        # the audit, which builds these addons too, never loads it (2 MB of its memory).
        self._registry: CollectorRegistry | None = None
        self._server: asyncio.base_events.Server | None = None
        # flow id -> a call through the proxy answered once its body is in
        self._bodies_to_come: dict[str, http.HTTPFlow] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option("wxgate_control_port", int, 0,
                          "Serve the control API on this loopback port too (0: off).")

    def configure(self, updated: Set[str]) -> None:
        if "wxgate_control_port" in updated and not 0 <= ctx.options.wxgate_control_port < 65536:
            raise exceptions.OptionsError("wxgate_control_port must be 0-65535")

    async def running(self) -> None:
        port = ctx.options.wxgate_control_port
        if port and self._server is None:
            self._server = await asyncio.start_server(self._serve_socket, "127.0.0.1", port)
            bound = self._server.sockets[0].getsockname()[1]
            events.logger().info("control_listening", address=f"127.0.0.1:{bound}")

    async def done(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # --- through the proxy -------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Every flow passes here, after IdentifyApp, which identifies every call but those
        # for the control host and mitm.it: an identified call is never one for this API.
        if flow.response is not None or info_of(flow).call is not UNIDENTIFIED:
            return
        req = flow.request
        # Rule out the others by the raw Host header (or target), which holds the name
        # whenever `pretty_host` is it, before parsing it.
        if CONTROL_HOST not in (host_header(req) or req.host).lower():
            return
        if req.pretty_host.lower() != CONTROL_HOST:
            return
        if flow.request.method in ("GET", "DELETE", "HEAD") or announced_body(flow.request) == 0:
            self._answer(flow, b"")
            return
        # The body arrives after this hook. A response set now keeps the call from any
        # upstream; mitmproxy reads the body and then runs `responseheaders` for that
        # response, where the answer replaces it. Answering there rather than in `request`
        # spares every other call an event: wxgate has no `request` hook.
        self._bodies_to_come[flow.id] = flow
        flow.request.stream = False
        flow.response = http.Response.make(
            500, b'{"error": "wxgate did not answer this call"}',
            {"Content-Type": "application/json"})

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self._bodies_to_come and self._bodies_to_come.pop(flow.id, None) is not None:
            self._answer(flow, flow.request.raw_content or b"")

    def error(self, flow: http.HTTPFlow) -> None:
        # The client went before its body was in.
        if self._bodies_to_come:
            self._bodies_to_come.pop(flow.id, None)

    def _answer(self, flow: http.HTTPFlow, body: bytes) -> None:
        # Never forwarded: wxgate.local is no upstream, so even a failure here is answered.
        try:
            parts = urlsplit(flow.request.path)
            peer = flow.client_conn.peername
            call = ApiCall(flow.request.method, parts.path, parse_qs(parts.query),
                        {k.lower(): v for k, v in flow.request.headers.items()}, body,
                        str(peer[0]) if peer else "")
            status, payload = self.handle(call)
        except Exception as exc:  # noqa: BLE001 - answer, never forward
            events.logger().error("wxgate_error", hook="ControlApi", flow_id=flow.id,
                                  error=f"{type(exc).__name__}: {exc}")
            status, payload = 500, {"error": f"wxgate failed on this call ({type(exc).__name__})"}
        content_type, data = _encode(payload)
        flow.request.stream = False
        flow.metadata["wxgate_synthetic"] = True
        flow.response = http.Response.make(status, data, {"Content-Type": content_type})

    # --- on the loopback control port ----------------------------------------------------

    async def _serve_socket(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            parts = urlsplit(target)
            peer = writer.get_extra_info("peername")
            status, payload = self.handle(ApiCall(method, parts.path, parse_qs(parts.query),
                                               headers, body, str(peer[0]) if peer else ""))
        except (TimeoutError, ValueError, asyncio.IncompleteReadError):
            status, payload = 400, {"error": "malformed HTTP request"}
        content_type, data = _encode(payload)
        writer.write(
            f"HTTP/1.1 {status} {RESPONSES.get(status, '')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data)
        try:
            await writer.drain()
        finally:
            writer.close()

    # --- the API itself ----------------------------------------------------------------------

    def handle(self, call: ApiCall) -> tuple[int, dict[str, Any] | str]:
        if not self._authorized(call):
            events.logger().warning("control_refused", client=call.client, method=call.method,
                                    path=call.path)
            return 401, {"error": "the control API needs Authorization: Bearer <control.token> "
                                  "from anything but loopback"}
        if call.method.upper() in STATE_CHANGING and (refusal := _cross_origin(call)):
            events.logger().warning("control_refused", client=call.client, method=call.method,
                                    path=call.path, reason=refusal)
            return 403, {"error": refusal}
        status, payload = self._route(call)
        # Reads (health checks, scrapes, dashboards) would flood the log; changes don't.
        if call.method.upper() != "GET":
            events.logger().info("control", client=call.client, method=call.method,
                                 path=call.path, status=status)
        return status, payload

    def _authorized(self, call: ApiCall) -> bool:
        if is_loopback_peer(call.client):
            return True
        token = self.runtime.config.control_token
        # Header values arrive as latin-1/surrogate-escaped text: compare the bytes sent.
        sent = call.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        return bool(token) and hmac.compare_digest(sent, f"Bearer {token}".encode())

    def _route(self, call: ApiCall) -> tuple[int, dict[str, Any] | str]:
        method, path = call.method.upper(), call.path.rstrip("/") or "/"
        if method == "GET" and path == "/status":
            return 200, self.status()
        if method == "GET" and path == "/metrics":
            from . import metrics
            if self._registry is None:
                self._registry = metrics.registry_for(self.runtime)
            return 200, metrics.render(self._registry)
        if method == "GET" and path == "/violations":
            since = call.query.get("since", [""])[0]
            limit = call.query.get("limit", [str(events.RECENT.PAGE_LIMIT)])[0]
            if not limit.isdigit() or int(limit) < 1:
                return 400, {"error": f"limit must be a positive integer, not {limit!r}"}
            found, last, more = events.RECENT.page(since, min(int(limit), 10_000))
            return 200, {"violations": found, "last": last, "more": more,
                         "oldest": events.RECENT.first_seq}
        if method == "POST" and (m := _APP_ACTION.match(path)):
            return self._app_action(m["appid"], m["action"], call.query.get("client", []))
        if method == "POST" and path == "/faults":
            return self._add_faults(call.body)
        if method == "DELETE" and path == "/faults":
            return 200, {"removed": self.runtime.faults.remove()}
        if method == "DELETE" and (m := _FAULT_ID.match(path)):
            removed = self.runtime.faults.remove(int(m["id"]))
            return (200 if removed else 404), {"removed": removed}
        return 404, {"error": f"no such endpoint: {method} {path}"}

    def _app_action(self, appid: str, action: str, clients: list[str]
                    ) -> tuple[int, dict[str, Any]]:
        """Background or foreground an app on one device (`?client=ADDR`) or on all."""
        if self.runtime.config.app(appid) is None:
            return 404, {"error": f"{appid} is not a configured app"}
        if len(clients) > 1:
            return 400, {"error": "name one device per call: a single ?client=ADDR"}
        device = None
        if clients:
            device = parse_device(clients[0])
            if device is None:
                return 400, {"error": f"client must be an IP address (a device is a client "
                                      f"address, as in GET /status), not {clients[0]!r}"}
        if action == "background":
            self.background.go_background(appid, device=device)
        else:
            self.background.go_foreground(appid, device=device)
        if device is None:
            in_background = appid in self.runtime.background
        else:
            in_background = self.runtime.background_since(device, appid) is not None
        return 200, {"appid": appid, "client": device, "background": in_background}

    def _add_faults(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        items = data if isinstance(data, list) else [data]
        errors: list[str] = []
        parsed = []
        for i, item in enumerate(items):
            def report(key: str, message: str, i: int = i) -> None:
                errors.append(f"faults[{i}]{'.' + key if key else ''}: {message}")

            fault = parse_fault(item, report)
            if isinstance(fault, BackgroundWindow):
                report("background", "use POST /apps/{appid}/background at run time")
            elif fault is not None:
                parsed.append(fault)
        if errors:
            return 400, {"errors": errors}
        ids = [self.runtime.faults.add(f) for f in parsed]
        return 201, {"ids": ids, "faults": self.runtime.faults.describe()}

    def status(self) -> dict[str, Any]:
        config = self.runtime.config
        devices = self.runtime.devices
        devices.sweep()
        inflight = self.runtime.inflight.counts()
        sockets = self.runtime.sockets.counts()
        apps = {}
        for app in config.apps:
            pools: dict[str, int] = {}
            for (_, appid, pool), n in inflight.items():
                if appid == app.appid:
                    pools[pool] = pools.get(pool, 0) + n
            apps[app.appid] = {
                "version": app.version,
                "inflight": sum(pools.values()),
                "inflight_by_pool": pools,
                "sockets": sum(n for (_, appid), n in sockets.items() if appid == app.appid),
                # In background on every device (POST .../background without ?client=)
                "background": app.appid in self.runtime.background,
                "background_since": self.runtime.background.get(app.appid),
                "background_devices": [
                    d.address for d in devices
                    if app.appid in d.apps | set(d.background)
                    and self.runtime.background_since(d.address, app.appid) is not None],
            }
        return {
            "mode": self.runtime.mode,
            "config": config.source,
            "apps": apps,
            "devices": self.devices_status(inflight, sockets),
            "device_idle_ms": devices.idle_ms,
            "devices_forgotten": devices.forgotten,
            "faults": self.runtime.faults.describe(),
            "seed": self.runtime.faults.seed,
            "flows": self.runtime.flows,
            "blocked": self.runtime.blocked,
            "violations": dict(self.runtime.violations),
        }

    def devices_status(self, inflight: dict[Any, int], sockets: dict[Any, int]
                       ) -> dict[str, Any]:
        """Every device seen and not forgotten: its apps, what it has in flight, its
        background state and which rules it hit how often."""
        now = self.runtime.devices.clock()
        found: dict[str, Any] = {}
        for device in self.runtime.devices:
            address = device.address
            appids = device.apps | set(device.background) | {
                key[1] for key in [*inflight, *sockets] if key[0] == address}
            apps: dict[str, Any] = {}
            for appid in sorted(appids):
                pools = {pool: n for (d, a, pool), n in inflight.items()
                         if d == address and a == appid}
                since = self.runtime.background_since(address, appid)
                apps[appid] = {
                    "inflight": sum(pools.values()),
                    "inflight_by_pool": pools,
                    "sockets": sockets.get((address, appid), 0),
                    "background": since is not None,
                    "background_since": since,
                }
            found[address] = {
                "apps": apps,
                "inflight": sum(a["inflight"] for a in apps.values()),
                "sockets": sum(a["sockets"] for a in apps.values()),
                "running": len(device.running),
                "calls": device.calls,
                "first_seen": device.first_seen,
                "idle_s": None if device.running else round(now - device.last_active, 1),
                "violations": device.violations_by_rule(),
            }
        return found
