"""The addon list: commands sit apart from the addons and import them, never the reverse;
a call is identified once and judged by one addon's ordered rules."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import taddons
from wxgate import events
from wxgate.pipeline import make_addons
from wxgate.policy.calls import RequestHead
from wxgate.verdict import info_of

from .addon_helpers import mp_flow, runtime_for

COMMAND_MODULES = ("wxgate.cli", "wxgate.audit", "wxgate.check_cert", "wxgate.report",
                   "wxgate.ctl")


def test_the_proxy_addons_load_no_command_module():
    code = ("import sys, wxgate.pipeline\n"
            f"print(' '.join(m for m in {COMMAND_MODULES!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == []


def test_an_allowed_call_is_identified_once_and_its_headers_read_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    parsed: list[str] = []
    real = RequestHead.of

    def counting(method: str, fields: Any) -> RequestHead:
        parsed.append(method)
        return real(method, fields)

    monkeypatch.setattr(RequestHead, "of", staticmethod(counting))
    runtime = runtime_for(tmp_path)
    events.configure("off")
    flow = mp_flow()
    flow.request.timestamp_start = time.time()  # tflow's is long past: a timeout

    async def requestheaders() -> None:
        for addon in make_addons(runtime):
            hook = getattr(addon, "requestheaders", None)
            if hook is not None and type(addon).__name__ != "ConfigLoader":
                result = hook(flow)
                if inspect.isawaitable(result):
                    await result

    with taddons.context():
        asyncio.run(requestheaders())
    assert parsed == ["GET"]
    assert info_of(flow).call.in_scope and info_of(flow).rules == [] and flow.error is None


def test_one_addon_judges_every_stateless_rule():
    names = [type(a).__name__ for a in make_addons()]
    assert names.count("Judge") == 1
    assert not {"HostMatch", "RefererGuard", "DomainGuard"} & set(names)
