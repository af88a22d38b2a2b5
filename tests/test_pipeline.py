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
from mitmproxy import exceptions, http
from mitmproxy.addonmanager import Loader, traverse
from mitmproxy.hooks import DoneHook, RunningHook
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons, tflow
from wxgate import events
from wxgate.pipeline import Pipeline, make_addons
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


def test_the_audit_and_the_addons_load_no_prometheus_client_and_no_jinja2():
    """Loaded when a scrape or an HTML report asks for them: every audit process builds
    the addons, and their 4 MB showed in its peak memory."""
    code = ("import sys, wxgate.audit, wxgate.pipeline\n"
            "wxgate.pipeline.make_addons()\n"
            "print(' '.join(m for m in ('prometheus_client', 'jinja2') if m in sys.modules))")
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



@pytest.mark.parametrize(("url", "answered"), [
    ("http://wxgate.local/status", True),  # never identified: the control API answers it
    ("https://api.example.com/x", False),  # identified: the control API does not look
])
def test_the_control_api_answers_only_the_calls_identification_left_unidentified(
        tmp_path: Path, url: str, answered: bool):
    runtime = runtime_for(tmp_path)
    events.configure("off")
    addons = make_addons(runtime)
    names = [type(a).__name__ for a in addons]
    assert names.index("IdentifyApp") < names.index("ControlApi") < names.index("Judge")
    flow = mp_flow(url)
    flow.client_conn.peername = ("127.0.0.1", 50000)
    with taddons.context():
        for addon in addons[1:names.index("ControlApi") + 1]:  # not ConfigLoader's
            hook = getattr(addon, "requestheaders", None)
            if hook is not None:
                hook(flow)
    assert (flow.response is not None) is answered
    assert (info_of(flow).call.appid is not None) is not answered


class Recorder:
    def __init__(self, name: str, seen: list[str], fail: bool = False) -> None:
        self.name, self.seen, self.fail = name, seen, fail

    def request(self, flow: http.HTTPFlow) -> None:
        self.seen.append(f"{self.name}.request")
        if self.fail:
            raise RuntimeError("boom")

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        await asyncio.sleep(0)
        self.seen.append(f"{self.name}.requestheaders")

    def configure(self, updated: set[str]) -> None:
        if self.fail and "wxgate_test_option" in updated:
            raise exceptions.OptionsError("refused")


class Loads:
    def load(self, loader: Loader) -> None:
        loader.add_option("wxgate_test_option", int, 0, "test")


def test_mitmproxy_delivers_each_event_to_one_object_that_calls_the_addons_in_list_order():
    seen: list[str] = []
    pipeline = Pipeline([Recorder("a", seen), Loads(), Recorder("b", seen)])
    assert [type(a).__name__ for a in traverse([pipeline])] == ["Pipeline"]
    assert not hasattr(pipeline, "response")  # nobody has it: mitmproxy's getattr is all
    with taddons.context(pipeline) as tctx:
        flow = tflow.tflow()
        asyncio.run(tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(flow)))
        asyncio.run(tctx.master.addons.handle_lifecycle(HttpRequestHook(flow)))
    assert seen == ["a.requestheaders", "b.requestheaders", "a.request", "b.request"]


class WaitsOnce:
    """Has to wait in `request` only for a flow marked so, as a queued call does."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def request(self, flow: http.HTTPFlow) -> Any:
        if not flow.marked:
            self.seen.append("waits.request")
            return None

        async def wait() -> None:
            await asyncio.sleep(0.01)
            self.seen.append("waits.request done")

        return wait()


def test_an_event_with_nothing_to_wait_for_is_delivered_without_a_coroutine():
    seen: list[str] = []
    pipeline = Pipeline([Recorder("a", seen), WaitsOnce(seen), Recorder("b", seen)])
    with taddons.context(pipeline):
        assert pipeline.request(tflow.tflow()) is None
    assert seen == ["a.request", "waits.request", "b.request"]


def test_an_addon_that_has_to_wait_holds_the_addons_after_it_until_it_is_done():
    seen: list[str] = []
    pipeline = Pipeline([Recorder("a", seen), WaitsOnce(seen), Recorder("b", seen)])
    flow = tflow.tflow()
    flow.marked = "queued"
    with taddons.context(pipeline) as tctx:
        asyncio.run(tctx.master.addons.handle_lifecycle(HttpRequestHook(flow)))
    assert seen == ["a.request", "waits.request done", "b.request"]


class Lifecycle:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def running(self) -> None:
        self.seen.append("running")

    async def done(self) -> None:
        await asyncio.sleep(0)
        self.seen.append("done")


def test_the_hooks_without_arguments_reach_the_addons_too():
    """Every hook but `running` and `done` passes one argument, which the pipeline hands
    on as it is; those two are delivered with none."""
    seen: list[str] = []
    pipeline = Pipeline([Lifecycle(seen), Lifecycle(seen)])
    with taddons.context(pipeline) as tctx:
        asyncio.run(tctx.master.addons.trigger_event(RunningHook()))
        asyncio.run(tctx.master.addons.trigger_event(DoneHook()))
    assert seen == ["running", "running", "done", "done"]


def test_a_hook_that_raises_is_logged_and_the_next_addon_still_runs(
        caplog: pytest.LogCaptureFixture):
    seen: list[str] = []
    pipeline = Pipeline([Recorder("a", seen, fail=True), Recorder("b", seen)])
    with taddons.context(pipeline) as tctx:
        asyncio.run(tctx.master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow())))
    assert seen == ["a.request", "b.request"]
    assert "Addon error: boom" in caplog.text


def test_a_configure_that_refuses_an_option_rolls_it_back():
    pipeline = Pipeline([Loads(), Recorder("a", [], fail=True)])
    with taddons.context(pipeline) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(pipeline, wxgate_test_option=5)
        assert tctx.options.wxgate_test_option == 0


def test_the_addons_commands_and_options_are_registered_through_the_pipeline(tmp_path: Path):
    with taddons.context(Pipeline(make_addons(runtime_for(tmp_path)))) as tctx:
        assert "wxgate.inflight" in tctx.master.commands.commands
        assert "wxgate_config" in tctx.options
