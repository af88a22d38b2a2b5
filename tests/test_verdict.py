"""Fail closed: an exception inside any enforcing hook blocks the flow and logs wxgate_error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addons import domain_guard, events, identify
from addons.domain_guard import DomainGuard
from addons.identify import IdentifyApp
from addons.state import META

from .addon_helpers import mp_flow, runtime_for


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("injected")


@pytest.mark.parametrize(
    ("module", "attr"),
    [(identify, "interface_for"), (domain_guard, "judge_target")],
    ids=["IdentifyApp.requestheaders", "DomainGuard.requestheaders"],
)
@pytest.mark.parametrize("block_with", ["fail", "response"])
def test_exception_in_enforcing_hook_blocks_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: object, attr: str, block_with: str,
):
    runtime = runtime_for(tmp_path)
    runtime.install(runtime.config.__class__(**{**runtime.config.__dict__,
                                                "block_with": block_with}))
    events.configure("off")
    events.SINK.open(tmp_path / "log.jsonl")
    monkeypatch.setattr(module, attr, _boom)
    identify_app, guard = IdentifyApp(runtime), DomainGuard(runtime)
    with taddons.context(identify_app, guard):
        flow = mp_flow()
        identify_app.requestheaders(flow)
        guard.requestheaders(flow)
    events.SINK.close()
    if block_with == "fail":
        assert flow.error is not None and flow.error.msg == "Connection killed."
    else:
        assert flow.response is not None and flow.response.status_code == 403
        assert json.loads(flow.response.content)["rule"] == "wxgate.error"
    assert flow.metadata[META].decision == "blocked"
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == ["wxgate_error"]
    assert "injected" in logged[0]["error"]
