"""At most `limits.concurrency` in-flight request/uploadFile/downloadFile calls per app
on one device (a client address: SPEC §3), as each phone's WeChat counts its own.

`over_concurrency: queue` holds the extra call until a slot frees (first come, first
served), as the client's task queue does; `fail` fails it with "exceed max task
count". A slot is freed by whichever of response, error, kill or client disconnect
comes first, exactly once (`Slots.release` is idempotent).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from mitmproxy import command, http

from .policy.rules import Severity, Violation
from .state import Runtime
from .verdict import enforce, fail_closed, judgeable, may_block, record

COUNTED_APIS = ("request", "uploadFile", "downloadFile")


class ConcurrencyLimit:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Takes a slot; a call that must queue gets back what to await (most calls don't)."""
        call = judgeable(flow)
        if call is None or call.api not in COUNTED_APIS:
            return None
        limits = self.runtime.config.limits
        pool = "shared" if limits.concurrency_pool == "shared" else call.api
        device = call.device
        key = (device, call.appid, pool)
        slots = self.runtime.inflight
        if slots.try_acquire(key, flow.id, limits.concurrency):
            return None
        in_flight = slots.in_use(key)
        scope = "request, uploadFile and downloadFile together" if pool == "shared" else (
            f"{call.api} alone")
        detail = (f"{in_flight} calls already in flight for {call.appid} on {device} "
                  f"(limit {limits.concurrency} per device, {scope})")
        if not may_block(flow, self.runtime):
            record(flow, Violation("concurrency.exceeded", detail, call.api), self.runtime,
                   "reported")
            slots.force_acquire(key, flow.id)
            return None
        if limits.over_concurrency == "fail":
            enforce(flow, Violation("concurrency.exceeded", detail, call.api,
                                    severity=Severity.ERROR), self.runtime)
            return None
        record(flow, Violation("concurrency.exceeded", f"{detail}; queued until a slot frees",
                               call.api), self.runtime, "queued")
        return self._queue(flow, key, limits.concurrency)

    async def _queue(self, flow: http.HTTPFlow, key: tuple[str, str | None, str],
                     limit: int) -> None:
        slots = self.runtime.inflight
        if not await self.runtime.aborter.park(
                flow, slots.acquire(key, flow.id, limit)):
            # Aborted while queued (timeout, background): fail it here, in its hook.
            if flow.killable:
                flow.kill()
            return
        if flow.client_conn.timestamp_end is not None:
            # The client gave up while queued; mitmproxy will fire `error` for it, but
            # the slot should not wait for that.
            slots.release(flow.id)

    def response(self, flow: http.HTTPFlow) -> None:
        self.runtime.inflight.release(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        self.runtime.inflight.release(flow.id)

    @command.command("wxgate.inflight")  # type: ignore[untyped-decorator]
    def inflight(self) -> str:
        """In-flight calls per device, app and pool, as `device/appid/pool=count` pairs."""
        counts = self.runtime.inflight.counts()
        return " ".join(f"{device}/{appid}/{pool}={n}"
                        for (device, appid, pool), n in sorted(counts.items()))
