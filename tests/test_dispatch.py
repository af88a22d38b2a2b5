"""`Dispatch` delivers every event as mitmproxy's own `AddonManager.trigger_event` does:
each case runs through both and must leave the same trace and the same log."""

from __future__ import annotations

import asyncio
import logging
import traceback
import types
from typing import Any

import pytest
from mitmproxy import addonmanager, exceptions, hooks, options
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster
from wxgate.cli import with_wxgate
from wxgate.dispatch import Dispatch, install


class Hooked:
    def __init__(self, trace: list[str], name: str, sub: list[object] | None = None) -> None:
        self.trace, self.name = trace, name
        if sub is not None:
            self.addons = sub

    def requestheaders(self, flow: Any) -> None:
        self.trace.append(f"{self.name}:{flow.id == FLOW.id}")


class Waits(Hooked):
    async def requestheaders(self, flow: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.trace.append(f"{self.name}:awaited")


class Raises(Hooked):
    def __init__(self, trace: list[str], name: str, exc: Exception) -> None:
        super().__init__(trace, name)
        self.exc = exc

    def requestheaders(self, flow: Any) -> None:
        self.trace.append(self.name)
        raise self.exc


class Returns(Hooked):
    def requestheaders(self, flow: Any) -> Any:
        self.trace.append(self.name)
        return 42  # not awaitable: ignored


class WaitsThenRaises(Hooked):
    def __init__(self, trace: list[str], name: str, exc: Exception) -> None:
        super().__init__(trace, name)
        self.exc = exc

    async def requestheaders(self, flow: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.trace.append(self.name)
        raise self.exc


class StopsIterating(Hooked):
    def requestheaders(self, flow: Any) -> None:
        self.trace.append(self.name)
        next(iter([]))  # a stray StopIteration, a plausible bug in a user's script


class GainsSubAddons(Hooked):
    """Its hook gives it sub-addons: mitmproxy reads `addons` after the hook ran."""

    def requestheaders(self, flow: Any) -> None:
        self.trace.append(self.name)
        self.addons = [Hooked(self.trace, self.name + "-gained")]


class SubAddonsRaise(Hooked):
    @property
    def addons(self) -> list[object]:
        raise RuntimeError("no sub-addons today")


class FalsyCallable:
    def __init__(self, trace: list[str]) -> None:
        self.trace = trace

    def __bool__(self) -> bool:
        return False

    def __call__(self, flow: Any) -> None:
        self.trace.append("falsy callable")


class NotAHook:
    def __init__(self, value: object) -> None:
        self.requestheaders = value

    def __repr__(self) -> str:  # the same in both runs' error messages
        return "NotAHook"


class NoSubAddons(Hooked):
    addons = None


FLOW = tflow.tflow()


def bare_master() -> Any:
    # What an AddonManager needs of its master to deliver events; a real Master would
    # also route log records into an event loop of its own.
    return types.SimpleNamespace(options=options.Options())


def chain_of(case: str, trace: list[str]) -> list[object]:
    def h(name: str, sub: list[object] | None = None) -> Hooked:
        return Hooked(trace, name, sub)

    return {
        "plain": [h("a"), object(), h("b"), Returns(trace, "c"), h("d")],
        "awaits": [h("a"), Waits(trace, "w"), h("b")],
        "raises": [h("a"), Raises(trace, "r", ValueError("boom")), h("b")],
        "halts": [h("a"), Raises(trace, "r", exceptions.AddonHalt()), h("b")],
        "module": [h("a"), NotAHook(types), h("b")],
        "not callable": [h("a"), NotAHook("text"), h("b")],
        "falsy": [h("a"), NotAHook(None), NotAHook(0), NotAHook(FalsyCallable(trace)),
                  h("b")],
        "awaited raises": [h("a"), WaitsThenRaises(trace, "w", ValueError("late")), h("b")],
        "awaited halts": [h("a"), WaitsThenRaises(trace, "w", exceptions.AddonHalt()),
                          h("b")],
        "stop iteration": [h("a"), StopsIterating(trace, "s"), h("b")],
        "hook gains sub-addons": [GainsSubAddons(trace, "g"), h("b")],
        "sub-addons raise": [SubAddonsRaise(trace, "p"), h("b")],
        "sub-addons": [h("a", [h("a1", [h("a11")]), h("a2")]), h("b", []), h("c")],
        "raising sub-addon": [h("a", [Raises(trace, "a1", KeyError("k")), h("a2")]), h("b")],
        "halting sub-addon": [h("a", [Raises(trace, "a1", exceptions.AddonHalt())]), h("b")],
        "sub-addons not a list": [NoSubAddons(trace, "a"), h("b")],
    }[case]


def deliver(manager_cls: type[addonmanager.AddonManager], case: str,
            caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[tuple[str, str]]]:
    trace: list[str] = []

    async def run() -> None:
        manager = manager_cls(bare_master())
        manager.chain = chain_of(case, trace)
        await manager.trigger_event(HttpRequestHeadersHook(FLOW))

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=addonmanager.__name__):
        asyncio.run(run())
    return trace, [(record.getMessage(), first_frame(record)) for record in caplog.records]


def first_frame(record: logging.LogRecord) -> str:
    """Whether a logged traceback starts in the hook that raised, not in the manager
    (where it starts when the manager's own code raised is not compared: its frames
    differ)."""
    if not record.exc_info:
        return ""
    return "hook" if traceback.extract_tb(record.exc_info[2])[0].name == "requestheaders" \
        else "elsewhere"


CASES = ["plain", "awaits", "raises", "halts", "module", "not callable", "falsy",
         "sub-addons", "raising sub-addon", "halting sub-addon", "awaited raises",
         "awaited halts", "stop iteration", "hook gains sub-addons", "sub-addons raise"]


@pytest.mark.parametrize("case", CASES)
def test_dispatch_delivers_as_mitmproxys_addon_manager_does(
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    """Same hooks, same order, an awaitable awaited before the next hook, an error logged
    and the next addon run, AddonHalt ending the event, sub-addons right after their
    addon."""
    expected = deliver(addonmanager.AddonManager, case, caplog)
    assert deliver(Dispatch, case, caplog) == expected
    assert expected[0]  # the case delivered something


def test_a_sub_addon_attribute_that_is_not_a_list_is_walked_by_mitmproxy(
        caplog: pytest.LogCaptureFixture) -> None:
    """`addons = None` makes mitmproxy's walk fail for that addon (logged); Dispatch hands
    anything but an empty list to mitmproxy's own walk, so it fails the same way."""
    expected = deliver(addonmanager.AddonManager, "sub-addons not a list", caplog)
    assert expected[1]
    assert deliver(Dispatch, "sub-addons not a list", caplog) == expected


@pytest.mark.parametrize("manager_cls", [addonmanager.AddonManager, Dispatch])
@pytest.mark.parametrize(("where", "exc"), [
    ("hook", exceptions.OptionsError("no")),
    ("sub-addon", exceptions.OptionsError("no")),
    ("awaited", exceptions.OptionsError("no")),
    ("hook", asyncio.CancelledError()),
])
def test_options_error_and_cancellation_propagate_out_of_the_event(
        manager_cls: type[addonmanager.AddonManager], where: str,
        exc: BaseException) -> None:
    """A configure that must roll back, and a task cancelled while it delivers, end the
    event with no later addon run."""
    trace: list[str] = []
    raiser: Hooked = (WaitsThenRaises(trace, "r", exc) if where == "awaited"  # type: ignore[arg-type]
                      else Raises(trace, "r", exc))  # type: ignore[arg-type]

    async def run() -> None:
        manager = manager_cls(bare_master())
        first = Hooked(trace, "a", [raiser]) if where == "sub-addon" else raiser
        manager.chain = [first, Hooked(trace, "b")]
        await manager.trigger_event(HttpRequestHeadersHook(FLOW))

    with pytest.raises(type(exc)):
        asyncio.run(run())
    assert "b:True" not in trace and "r" in trace


def test_the_wxgate_master_delivers_through_dispatch() -> None:
    """`wxgate run` (mitmdump and mitmweb alike) gets its events through Dispatch, and an
    event still reaches wxgate's Pipeline."""

    async def run() -> tuple[type, bool]:
        master = with_wxgate(DumpMaster)(options.Options(), with_termlog=False)
        flow = tflow.tflow()
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
        return type(master.addons), hasattr(flow, "_wxgate_info")

    manager_type, seen = asyncio.run(run())
    assert manager_type is Dispatch and seen


def test_install_leaves_a_manager_that_is_not_mitmproxys_own_alone() -> None:
    """A master whose manager is already something else (a subclass of its own) keeps it."""

    class Own(addonmanager.AddonManager):
        pass

    manager = Own(bare_master())
    install(manager)
    assert type(manager) is Own
    plain = addonmanager.AddonManager(bare_master())
    install(plain)
    assert type(plain) is Dispatch


def test_running_and_done_take_no_arguments() -> None:
    """Hooks without arguments get none."""
    heard: list[str] = []

    class Lifecycle:
        def running(self) -> None:
            heard.append("running")

        async def done(self) -> None:
            heard.append("done")

    async def run() -> None:
        manager = Dispatch(bare_master())
        manager.chain = [Lifecycle()]
        await manager.trigger_event(hooks.RunningHook())
        await manager.trigger_event(hooks.DoneHook())

    asyncio.run(run())
    assert heard == ["running", "done"]
