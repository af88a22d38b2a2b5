"""Fail closed: an exception inside any enforcing hook blocks the flow and logs wxgate_error."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from types import ModuleType

import pytest
from mitmproxy.test import taddons

from addons import concurrency_limit, domain_guard, events, identify, referer_guard, socket_limit
from addons.concurrency_limit import ConcurrencyLimit
from addons.domain_guard import DomainGuard
from addons.identify import IdentifyApp
from addons.referer_guard import RefererGuard
from addons.socket_limit import SocketLimit
from addons.verdict import info_of

from .addon_helpers import mp_flow, runtime_for

# Each enforcing hook, and a name inside its module to break.
HOOKS = [
    (identify, "interface_for", IdentifyApp, {}),
    (referer_guard, "canonical_referer", RefererGuard, {}),
    (domain_guard, "judge_target", DomainGuard, {}),
    (socket_limit, "Violation", SocketLimit, {"Upgrade": "websocket"}),
    (concurrency_limit, "Violation", ConcurrencyLimit, {}),
]


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("injected")


@pytest.mark.parametrize(
    ("module", "attr", "addon_cls", "headers"), HOOKS,
    ids=[f"{cls.__name__}.requestheaders" for _, _, cls, _ in HOOKS],
)
@pytest.mark.parametrize("block_with", ["fail", "response"])
def test_exception_in_enforcing_hook_blocks_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: ModuleType, attr: str,
    addon_cls: type, headers: dict[str, str], block_with: str,
):
    runtime = runtime_for(tmp_path)
    runtime.install(runtime.config.__class__(**{
        **runtime.config.__dict__, "block_with": block_with,
        "limits": runtime.config.limits.__class__(concurrency=1, sockets=1),
    }))
    events.configure("off")
    events.SINK.open(tmp_path / "log.jsonl")
    # Fill the one slot so the limit addons reach their rule code.
    runtime.inflight.force_acquire(("wx0123456789abcdef", "shared"), "other")
    runtime.sockets.force_acquire("wx0123456789abcdef", "other")
    monkeypatch.setattr(module, attr, _boom)
    addon = addon_cls(runtime)
    identify_app = addon if addon_cls is IdentifyApp else IdentifyApp(runtime)
    with taddons.context(*{id(a): a for a in (identify_app, addon)}.values()):
        flow = mp_flow(**headers)
        if addon_cls is not IdentifyApp:
            identify_app.requestheaders(flow)
            # Referer already canonical, so RefererGuard reaches canonical_referer.
            assert info_of(flow).in_scope
        result = addon.requestheaders(flow)
        if inspect.iscoroutine(result):
            asyncio.run(result)
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
