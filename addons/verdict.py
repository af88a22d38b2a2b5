"""Turning a rule's verdict into what happens to the flow, and the log line that says why.

Every enforcing addon ends here, so blocking, marking and logging are the same for all
rules: `mode: enforce` blocks error-level violations of live flows the way the client
fails them (`block_with`), `mode: report` only logs.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import http

from . import events
from .abort import close_client_soon
from .policy.call import Call
from .policy.calls import non_business_domain_page
from .policy.rules import Violation
from .state import META, RESOLVED_FROM, FlowInfo, Runtime, device_of_flow

# The attribute of a flow object that holds its FlowInfo. An attribute, not a weak-key
# table: every hook asks for it, several times, and an attribute costs a fiftieth of a
# weak reference. A replayed copy (`flow.copy()`) is a new object without it: judged afresh.
_INFO_ATTR = "_wxgate_info"  # read by name in `info_of`


def info_of(flow: http.HTTPFlow) -> FlowInfo:
    try:
        # The attribute read directly: half the cost of `getattr` with a default, and every
        # call asks 16 times.
        return flow._wxgate_info  # type: ignore[attr-defined, no-any-return]
    except AttributeError:
        return start_info(flow)


def start_info(flow: http.HTTPFlow) -> FlowInfo:
    """`info_of`, for the hook that sees a flow first (IdentifyApp): a flow without its
    FlowInfo yet costs `info_of` an exception."""
    info: FlowInfo | None = getattr(flow, _INFO_ATTR, None)
    if info is None:
        # Flows live when wxgate first saw them: for these a kill is an answer, while a
        # loaded flow (`-r`) may carry a kill from the session it was captured in.
        info = FlowInfo(seen_live=flow.live)
        setattr(flow, _INFO_ATTR, info)
    return info


def publish(flow: http.HTTPFlow, info: FlowInfo | None = None) -> None:
    """Copy the decision into `flow.metadata` as plain data: saved flows and mitmweb keep it."""
    flow.metadata[META] = (info or info_of(flow)).summary()


def answered(flow: http.HTTPFlow, info: FlowInfo | None = None) -> bool:
    """Another addon (or wxgate itself) already answered or killed this flow.

    A loaded flow (`-r`, audit) carries the response and error it had when captured:
    those say nothing about what the client would do, so only wxgate's own block counts.
    A kill ends a live flow's `live`, so a flow seen live and then killed (by another
    addon, or by wxgate's own drop fault) counts as answered too. `info`: the flow's
    FlowInfo, when the caller has it.
    """
    if info is None:
        info = info_of(flow)
    if info.decision == "blocked":
        return True
    if flow.live:
        return flow.response is not None or flow.error is not None
    return info.seen_live and flow.error is not None and \
        flow.error.msg == flow.error.KILLED_MESSAGE


def judgeable(flow: http.HTTPFlow) -> Call | None:
    """The flow's Call when it is a mini program's call that nothing has answered yet."""
    info = info_of(flow)
    call = info.call
    return call if call.in_scope and not answered(flow, info) else None


def client_port(flow: http.HTTPFlow) -> int:
    """The port the client asked for, also after `resolve` (or in a capture made through it)
    pointed the request elsewhere."""
    resolved = flow.metadata.get(RESOLVED_FROM)
    return int(resolved[1]) if resolved else flow.request.port


def flow_fields(flow: http.HTTPFlow) -> dict[str, Any]:
    info = info_of(flow)
    req = flow.request
    return {
        "appid": info.call.appid,
        "app_version": info.call.app_version,
        "api": info.call.api,
        "method": req.method,
        "url": req.pretty_url,
        "host": req.pretty_host,
        "port": client_port(flow),
        # The device as /status, ?client= and match.client spell it.
        "client": device_of_flow(flow) or None,
        "flow_id": flow.id,
        "platform": info.call.platform,
    }


def may_block(flow: http.HTTPFlow, runtime: Runtime) -> bool:
    """Only `mode: enforce` blocks, and only live flows (a loaded flow can't be killed)."""
    return runtime.mode == "enforce" and flow.live


def enforce(flow: http.HTTPFlow, violation: Violation, runtime: Runtime,
            under_way: bool = False) -> bool:
    """Log the violation and block the flow if the mode says so; True when blocked.

    A flow `under_way` (already past its hooks, waiting on the upstream or streaming) is
    ended through the aborter; any other is answered the way `block_with` says.
    """
    block = violation.fails_call and may_block(flow, runtime)
    record(flow, violation, runtime, "blocked" if block else "reported")
    if not block:
        return False
    runtime.blocked += 1
    if under_way:
        runtime.aborter.abort(flow, violation.rule)
    else:
        _block(flow, runtime.config.block_with, {
            "rule": violation.rule,
            "errMsg": violation.err_msg,
            "errno": violation.errno,
            # A client-controlled detail (a 1 MB Referer) is not echoed back whole.
            "detail": events.cut_text(violation.detail, runtime.config.log.max_field_bytes),
            **_page_for(flow, violation),
        })
    return True


def _page_for(flow: http.HTTPFlow, violation: Violation) -> dict[str, str]:
    """A web-view shows the client's own "non-business domain" page, not a JSON body."""
    if violation.rule != "webview.not_listed":
        return {}
    origin = f"{flow.request.scheme}://{flow.request.pretty_host}"
    return {"page": non_business_domain_page(origin, violation.detail)}


def interrupt(flow: http.HTTPFlow, violation: Violation, runtime: Runtime) -> bool:
    """`enforce` for a flow already on its way (timeouts, background)."""
    return enforce(flow, violation, runtime, under_way=True)


def record(flow: http.HTTPFlow, violation: Violation, runtime: Runtime, action: str) -> None:
    """Log one violation line (SPEC §5) and mark the flow for mitmweb."""
    info = info_of(flow)
    fields = flow_fields(flow)
    fields["api"] = violation.api
    events.logger().warning(
        "violation",
        rule=violation.rule,
        severity=violation.level.value,
        action=action,
        **fields,
        detail=violation.detail,
        # Only a call the real client fails carries its failure text.
        errMsg=violation.err_msg if violation.fails_call else None,
        errno=violation.errno if violation.fails_call else None,
        **violation.extra,
    )
    runtime.count_violation(fields["client"], violation.rule, violation.level.value, action)
    info.rules.append(violation.rule)
    # mitmweb shows the mark and the comment: the flow list says which rule.
    flow.comment = "wxgate: " + ", ".join(info.rules)
    if action == "blocked":
        info.decision = "blocked"
        flow.marked = ":no_entry_sign:"
    elif info.decision == "allowed":
        info.decision = action
        flow.marked = ":warning:"
    publish(flow)


# A blocked call's body up to this size is read so that the 403 can be sent; a larger one
# (or one of unknown size) is never read: the connection ends instead (SPEC §8).
MAX_BUFFERED_BLOCKED_BODY = 64 * 1024


def announced_body(request: http.Request) -> int | None:
    """The size of the body a request head announces: 0 for none, None when unknown
    (chunked, a malformed length, or HTTP/2, which needs no content-length, on a method
    that carries a body)."""
    if "transfer-encoding" in request.headers:
        return None
    length = request.headers.get("content-length", "").strip()
    if length:
        return int(length) if length.isdigit() else None
    return None if request.is_http2 and request.method.upper() in ("POST", "PUT", "PATCH") \
        else 0


def body_to_come(request: http.Request) -> bool:
    """At `requestheaders`: the request body is still to be read and may be large."""
    if request.raw_content is not None:
        return False  # already read (the `request` stage, or a loaded flow)
    size = announced_body(request)
    return size is None or size > MAX_BUFFERED_BLOCKED_BODY


def _block(flow: http.HTTPFlow, block_with: str, body: dict[str, Any]) -> None:
    # mitmproxy reads the whole body before sending a response set in `requestheaders`:
    # for a large one, end the connection instead of holding it in memory.
    if block_with == "response" and not body_to_come(flow.request):
        # A response can't be combined with a streamed request body; a blocked call
        # needs no streaming.
        flow.request.stream = False
        page = body.pop("page", None)
        flow.response = http.Response.make(
            403,
            page.encode() if page else json.dumps(body, ensure_ascii=False).encode(),
            {"Content-Type": "text/html; charset=utf-8" if page
             else "application/json; charset=utf-8",
             "X-Wxgate-Rule": str(body["rule"])},
        )
    elif flow.killable:
        # The client sees the connection close: the fail callback, as on the phone.
        flow.kill()
        if body_to_come(flow.request) and not flow.request.is_http2:
            # mitmproxy 12 stops reading a killed HTTP/1 request's body but neither answers
            # nor closes: the phone would wait for its own timeout, and the descriptor
            # stays. HTTP/2 resets the one stream instead.
            close_client_soon(flow.client_conn)


def fail_closed[F: Callable[..., Any]](hook: F) -> F:
    """An exception inside an enforcing hook blocks the flow instead of forwarding it.

    mitmproxy logs a hook's exception and carries on with the flow; for a policy
    proxy that would mean a bug lets every call through. The hook's addon has a
    `runtime` attribute.
    """

    def failed(self: Any, flow: http.HTTPFlow, exc: Exception) -> None:
        runtime: Runtime = self.runtime
        # `mode: report` promises never to block, even on wxgate's own errors.
        block = may_block(flow, runtime) and flow.killable
        events.logger().error(
            "wxgate_error", hook=f"{type(self).__name__}.{hook.__name__}",
            error=f"{type(exc).__name__}: {exc}", flow_id=flow.id,
            url=flow.request.pretty_url, action="blocked" if block else "forwarded",
        )
        if block:
            info_of(flow).decision = "blocked"
            runtime.blocked += 1
            if flow.response is None:
                _block(flow, runtime.config.block_with, {
                    "rule": "wxgate.error", "errMsg": None, "errno": None,
                    "detail": f"wxgate failed while judging this call ({type(exc).__name__})",
                })
            else:
                # A response-stage hook: the response it was judging is not delivered.
                flow.kill()

    @functools.wraps(hook)
    def guarded(self: Any, flow: http.HTTPFlow, *args: Any) -> Any:
        try:
            result = hook(self, flow, *args)
        except Exception as exc:  # noqa: BLE001 - the point is to catch everything
            failed(self, flow, exc)
            return None
        if result is not None and inspect.isawaitable(result):
            # An async hook, or one that has to wait only this time (a queued call).
            return guarded_wait(result, functools.partial(failed, self), flow)
        return result

    # The Pipeline calls the hook itself and hands a failure to `failed`: one call less
    # per hook and flow than through `guarded`, the same outcome (see `unguarded`).
    guarded.wxgate_unguarded = (hook, failed)  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


# What blocks a flow whose fail-closed hook raised: (flow, the exception).
FailureHandler = Callable[[http.HTTPFlow, Exception], None]


async def guarded_wait(waiting: Awaitable[Any], failed: FailureHandler,
                       flow: http.HTTPFlow) -> Any:
    """Await what a fail-closed hook returned; a failure while waiting blocks the flow."""
    try:
        return await waiting
    except Exception as exc:  # noqa: BLE001 - the point is to catch everything
        failed(flow, exc)
        return None


def unguarded(method: Callable[..., Any]) -> tuple[Callable[..., Any], FailureHandler | None]:
    """A bound hook method as (the hook without its `fail_closed` guard, what blocks the
    flow when it raises), or (the method, None) for a hook that is not fail-closed."""
    raw = getattr(getattr(method, "__func__", None), "wxgate_unguarded", None)
    if raw is None:
        return method, None
    hook, failed = raw
    addon = method.__self__  # type: ignore[attr-defined]
    # A bound method of the raw hook: called for every flow, cheaper than a partial.
    return types.MethodType(hook, addon), functools.partial(failed, addon)
