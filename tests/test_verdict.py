"""Fail closed: an exception inside any enforcing hook blocks the flow and logs wxgate_error."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from wxgate import (
    background,
    concurrency_limit,
    events,
    identify,
    judge,
    network_timeout,
    redirect_guard,
    socket_limit,
    verdict,
)
from wxgate.background import Background
from wxgate.concurrency_limit import ConcurrencyLimit
from wxgate.faults_injector import Faults
from wxgate.identify import IdentifyApp
from wxgate.judge import Judge
from wxgate.network_timeout import NetworkTimeout
from wxgate.pipeline import Pipeline, make_addons
from wxgate.redirect_guard import RedirectGuard
from wxgate.socket_limit import SocketLimit
from wxgate.verdict import answered, info_of, start_info

from .addon_helpers import APPID, mp_flow, run_hook, runtime_for

# Each enforcing hook, and a name inside its module to break.
HOOKS = [
    (identify, "identify", IdentifyApp, {}),
    (judge, "answered", Judge, {}),
    (socket_limit, "Violation", SocketLimit, {"Upgrade": "websocket"}),
    (concurrency_limit, "Violation", ConcurrencyLimit, {}),
]


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("injected")


def _hook(addon: object, name: str, via: str) -> Any:
    """The addon's hook as the audit calls it (`direct`: through its `fail_closed` guard)
    or as the live proxy does (`pipeline`: the Pipeline calls it unguarded and blocks)."""
    return getattr(addon if via == "direct" else Pipeline([addon]), name)


@pytest.mark.parametrize(
    ("module", "attr", "addon_cls", "headers"), HOOKS,
    ids=[f"{cls.__name__}.requestheaders" for _, _, cls, _ in HOOKS],
)
@pytest.mark.parametrize("block_with", ["fail", "response"])
@pytest.mark.parametrize("via", ["direct", "pipeline"])
def test_exception_in_enforcing_hook_blocks_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: ModuleType, attr: str,
    addon_cls: type, headers: dict[str, str], block_with: str, via: str,
):
    runtime = runtime_for(tmp_path)
    runtime.install(runtime.config.__class__(**{
        **runtime.config.__dict__, "block_with": block_with,
        "limits": runtime.config.limits.__class__(concurrency=1, sockets=1),
    }))
    events.configure("off")
    events.SINK.open(tmp_path / "log.jsonl")
    # Fill the one slot so the limit addons reach their rule code.
    runtime.inflight.force_acquire(("127.0.0.1", "wx0123456789abcdef", "shared"), "other")
    runtime.sockets.force_acquire(("127.0.0.1", "wx0123456789abcdef"), "other")
    monkeypatch.setattr(module, attr, _boom)
    addon = addon_cls(runtime)
    identify_app = addon if addon_cls is IdentifyApp else IdentifyApp(runtime)
    with taddons.context(*{id(a): a for a in (identify_app, addon)}.values()):
        flow = mp_flow(**headers)
        if addon_cls is not IdentifyApp:
            identify_app.requestheaders(flow)
            assert info_of(flow).call.in_scope
        run_hook(_hook(addon, "requestheaders", via)(flow))
    events.SINK.close()
    if block_with == "fail":
        assert flow.error is not None and flow.error.msg == "Connection killed."
    else:
        assert flow.response is not None and flow.response.status_code == 403
        assert json.loads(flow.response.content)["rule"] == "wxgate.error"
    assert info_of(flow).decision == "blocked"
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == ["wxgate_error"]
    assert "injected" in logged[0]["error"]


def _break_background(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.background[APPID] = time.time()  # so the hook reaches its rule
    monkeypatch.setattr(background, "Violation", _boom)


def _break_timeout(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network_timeout, "asyncio", SimpleNamespace(get_running_loop=_boom))


def _break_faults(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fault must be set, or the hook skips deciding at all.
    monkeypatch.setattr(runtime.faults, "faults", {1: "a stand-in fault"})
    monkeypatch.setattr(runtime.faults, "decide", _boom)


def _break_redirect(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redirect_guard, "judge_target", _boom)


# The hooks that judge later (background, timeout, faults, redirects), and how to break each.
LATE_HOOKS: list[tuple[type, str, Any]] = [
    (Background, "requestheaders", _break_background),
    (NetworkTimeout, "requestheaders", _break_timeout),
    (Faults, "requestheaders", _break_faults),
    (RedirectGuard, "response", _break_redirect),
]


@pytest.mark.parametrize(("addon_cls", "hook", "breaker"), LATE_HOOKS,
                         ids=[f"{cls.__name__}.{hook}" for cls, hook, _ in LATE_HOOKS])
@pytest.mark.parametrize("block_with", ["fail", "response"])
@pytest.mark.parametrize("via", ["direct", "pipeline"])
def test_exception_in_a_later_enforcing_hook_blocks_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, addon_cls: type, hook: str,
    breaker: Any, block_with: str, via: str,
) -> None:
    """An exception injected into the hook's rule code blocks the call and logs one
    wxgate_error naming the hook: before the upstream as `block_with` says; in the
    response stage the judged response is not delivered (killed, or the 403)."""
    runtime = runtime_for(tmp_path)
    runtime.install(runtime.config.__class__(**{**runtime.config.__dict__,
                                                "block_with": block_with}))
    events.configure("off")
    events.SINK.open(tmp_path / "log.jsonl")
    breaker(runtime, monkeypatch)
    addon = addon_cls(runtime)
    identify = IdentifyApp(runtime)

    async def drive() -> http.HTTPFlow:
        flow = mp_flow()
        identify.requestheaders(flow)
        assert info_of(flow).call.in_scope
        if hook == "response":
            flow.response = tutils.tresp(status_code=302, content=b"")
            flow.response.headers["Location"] = "https://evil.example.net/next"
        result = _hook(addon, hook, via)(flow)
        if inspect.isawaitable(result):
            await result
        return flow

    with taddons.context(identify, addon):
        flow = asyncio.run(drive())
    events.SINK.close()
    killed = flow.error is not None and flow.error.msg == "Connection killed."
    refused = (flow.response is not None and flow.response.status_code == 403
               and json.loads(flow.response.content or b"{}")["rule"] == "wxgate.error")
    if hook == "response":
        assert killed or refused, flow
    elif block_with == "fail":
        assert killed, flow
    else:
        assert refused, flow
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == ["wxgate_error"]
    assert logged[0]["hook"] == f"{addon_cls.__name__}.{hook}" and "injected" in logged[0][
        "error"]


def test_every_enforcing_hook_has_a_fail_closed_test() -> None:
    """Each hook of the live addon list that is wrapped to fail closed is broken by a test:
    one of the two tables here, or tests/test_tls_audit.py (TlsAudit).
    A new enforcing hook without one fails here."""
    covered = {(cls.__name__, "requestheaders") for *_, cls, _ in HOOKS}
    covered |= {(cls.__name__, hook) for cls, hook, _ in LATE_HOOKS}
    wrapped = set()
    for addon in make_addons():
        for name, member in inspect.getmembers(type(addon), inspect.isfunction):
            # functools.wraps gives the wrapper the hook's names; its code is fail_closed's.
            if member.__code__.co_name == "guarded":
                wrapped.add((type(addon).__name__, name))
    assert ("Judge", "requestheaders") in wrapped  # the table below is not vacuous
    missing = {h for h in wrapped - covered if h[0] != "TlsAudit"}
    assert missing == set()


class FailsWhileWaiting:
    """A hook that returns what to await (a queued call, a TLS probe), which then fails."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    @verdict.fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Any:
        async def wait() -> None:
            await asyncio.sleep(0)
            raise RuntimeError("injected while waiting")

        return wait()


@pytest.mark.parametrize("via", ["direct", "pipeline"])
def test_an_exception_while_a_hook_waits_blocks_the_flow(tmp_path: Path, via: str):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    flow = mp_flow()
    with taddons.context():
        asyncio.run(_hook(FailsWhileWaiting(runtime), "requestheaders", via)(flow))
    assert flow.error is not None and flow.error.msg == "Connection killed."
    assert info_of(flow).decision == "blocked"


def test_a_flow_killed_by_another_addon_counts_as_answered():
    """kill() sets live=False; the flow is still answered, not judged again."""
    flow = tflow.tflow()
    assert not answered(flow)  # first seen live
    flow.kill()
    assert not flow.live
    assert answered(flow)


def test_a_loaded_flow_with_a_captured_kill_is_still_judged():
    flow = tflow.tflow()
    flow.kill()  # killed in the session it was captured in, then loaded (`-r`)
    assert not flow.live
    assert not answered(flow)


def test_each_flow_keeps_its_own_info_when_asked_about_in_turns():
    first, second = tflow.tflow(), tflow.tflow()
    info_of(first).decision = "blocked"
    assert info_of(second).decision == "allowed"
    assert info_of(first).decision == "blocked" and info_of(first) is not info_of(second)


@pytest.mark.parametrize("first", [info_of, start_info])
def test_a_flow_gets_one_flowinfo_made_when_first_asked_for(first: Any):
    """Made by whichever is asked first, live as the flow was then; both then give it."""
    flow = tflow.tflow()
    info = first(flow)
    flow.live = False
    assert info_of(flow) is info and start_info(flow) is info
    assert info.seen_live is True
