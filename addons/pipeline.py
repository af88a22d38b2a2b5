"""The wxgate addons, in enforcement order (`addons/wxgate_addons.py` runs them in mitmdump).

Hook order is list order, so this list is the order in which rules are judged:
refuse clients outside `clients:` and destinations on this machine, identify the call
once (its Call: app, API, hosts, Referer), answer the control host (whose calls are never
identified, so identified ones skip the check), judge the call by the stateless rules in
their order (`policy/call_rules.py`: the named host is the host connected, the Referer,
the URL), refuse calls of a backgrounded app, take a socket place, start the
networkTimeout clock (so time queued counts, as on the phone), take an in-flight slot,
apply faults, and only then point the request at its `resolve` target. The upstream TLS
handshake is judged by the phone's certificate rules (TlsAudit) before any response is
looked at; then a redirect is re-checked, then the response body.

The live proxy registers the list behind one `Pipeline`; the audit calls the list's hooks
itself (`replay.py`), in the same order.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mitmproxy import exceptions, hooks

from .background import Background
from .banner import Banner
from .client_filter import ClientFilter
from .concurrency_limit import ConcurrencyLimit
from .config_loader import ConfigLoader
from .control_api import ControlApi
from .faults_injector import Faults
from .identify import IdentifyApp
from .idle_connections import IdleConnections
from .judge import Judge
from .local_destinations import LocalDestinations
from .long_urls import LongUrls
from .network_timeout import NetworkTimeout
from .passthrough import Passthrough
from .redirect_guard import RedirectGuard
from .resolve import Resolve
from .response_checks import ResponseChecks
from .socket_limit import SocketLimit
from .startup_heap import StartupHeap
from .state import Runtime
from .summary import Summary
from .tls_audit import TlsAudit
from .upstream_pool import UpstreamPool
from .verdict import FailureHandler, guarded_wait, unguarded
from .websocket_memory import WebSocketMemory

if TYPE_CHECKING:
    from mitmproxy.addons.script import ScriptLoader


def make_addons(runtime: Runtime | None = None) -> list[object]:
    runtime = runtime or Runtime()
    background = Background(runtime)
    upstream = UpstreamPool(runtime)
    return [
        ConfigLoader(runtime),
        ClientFilter(runtime),
        LocalDestinations(runtime),
        Passthrough(runtime),
        IdleConnections(runtime),
        runtime.aborter,
        IdentifyApp(runtime),
        ControlApi(runtime, background),
        Judge(runtime),
        background,
        SocketLimit(runtime),
        NetworkTimeout(runtime, upstream),
        ConcurrencyLimit(runtime),
        Faults(runtime),
        Resolve(runtime),
        upstream,
        TlsAudit(runtime),
        RedirectGuard(runtime),
        ResponseChecks(runtime),
        Banner(runtime),
        Summary(runtime),
        WebSocketMemory(),
        LongUrls(),
        StartupHeap(),
    ]



logger = logging.getLogger(__name__)


class Pipeline:
    """The addons of `make_addons` as mitmproxy sees them: one object, whose hook of each
    name calls the addons' hooks of that name in list order.

    mitmproxy delivers every event to every addon it knows: a walk of the list, a getattr
    and the event's arguments built again for each, about 100 us of a judged call's CPU
    for the 23 addons. Behind this one object an event costs one lookup, and only the
    addons that have the hook are called. As mitmproxy's addon manager does, a hook that
    raises is logged and the next addon still runs, while `OptionsError` (a configure
    that must roll back) and `AddonHalt` stop the event; the addons' commands are
    registered at load. The members are not exposed as `addons`, which mitmproxy would
    walk again.
    """

    def __init__(self, members: list[object]) -> None:
        # Every hook class registers its name in `hooks.all_hooks` when its module is
        # imported; the proxy's protocol layers define most of them.
        import mitmproxy.addonmanager  # noqa: F401 - LoadHook
        import mitmproxy.eventsequence  # noqa: F401 - every protocol layer's hooks

        self.members = members
        # mitmproxy's sub-addons of this one, walked after it for every event: only the
        # scripts of the loader it holds under `wxgate run` (`hold`), never the members.
        self.addons: list[object]
        self._load_members: Callable[..., Any] | None = None
        self._handlers: dict[str, list[Handler]] = {}
        for name in hooks.all_hooks:
            handlers = [unguarded(method) for member in members
                        if callable(method := getattr(member, name, None))]
            if handlers:
                self._handle(name, handlers)

    def _handle(self, name: str, handlers: list[Handler]) -> None:
        self._handlers[name] = handlers
        hook: Any = hooks.all_hooks[name]  # a dataclass: its fields are its arguments
        forward = _forward(handlers, takes_arg=bool(dataclasses.fields(hook)))
        if name == "load":
            self._load_members = forward
        else:
            setattr(self, name, forward)

    def load(self, loader: Any) -> None:
        for member in self.members:
            loader.master.commands.collect_commands(member)
        if self._load_members is not None:
            self._load_members(loader)

    def hold(self, scripts: ScriptLoader) -> None:
        """Stand in for mitmproxy's script loader, already registered, in its place in
        the chain (`cli.with_wxgate`): its hooks run after the members' and its scripts
        become this object's sub-addons, walked right after it for every event.

        Holding the loader as the sub-addon instead cost mitmproxy a nested walk and two
        lookups on it for each of a call's eight events, for its two hooks: `configure`
        (which may replace its list of scripts, taken again here) and `running`. Its
        `load` ran when it was registered.
        """
        def configure(updated: set[str]) -> None:
            scripts.configure(updated)
            self.addons = scripts.addons

        self.addons = scripts.addons
        for name, hook in (("configure", configure), ("running", scripts.running)):
            self._handle(name, [*self._handlers.get(name, []), (hook, None)])


Handler = tuple[Callable[..., Any], FailureHandler | None]


def _forward(handlers: list[Handler], takes_arg: bool) -> Callable[..., Any]:
    """One hook that calls `handlers` in order, as mitmproxy's addon manager would.

    It runs synchronously until a handler returns an awaitable, and only then returns a
    coroutine that awaits it and runs the rest: a judged call's hooks mostly have nothing
    to wait for, and a coroutine per event and addon was a measurable part of their cost.
    A fail-closed hook (`verdict.fail_closed`) is called without its guard, and a failure
    of it, or of what it returned to await, blocks the flow as the guard would.
    A partial, not a closure: mitmproxy calls it straight into `_deliver`. Every hook
    but `running` and `done` takes one argument, so `_deliver` passes just that one: an
    argument tuple packed and unpacked for each handler cost as much as the loop itself.
    """
    if not takes_arg:
        handlers = [(_without_arg(handler), failed) for handler, failed in handlers]
        return functools.partial(_deliver, handlers, None)
    return functools.partial(_deliver, handlers)


def _without_arg(hook: Callable[[], Any]) -> Callable[[Any], Any]:
    return lambda _: hook()


def _deliver(handlers: Iterable[Handler], arg: Any) -> Any:
    """Call `handlers` in order; None when none had to wait, else the coroutine that
    awaits the one that did and delivers to the rest."""
    pending = iter(handlers)
    for handler, failed in pending:
        try:
            result = handler(arg)
        except (exceptions.AddonHalt, exceptions.OptionsError):
            raise
        except Exception as exc:  # noqa: BLE001 - logged and skipped, as mitmproxy does
            if failed is not None:
                failed(arg, exc)
            else:
                logger.error(f"Addon error: {exc}", exc_info=exc)
            continue
        if result is not None and inspect.isawaitable(result):
            if failed is not None:
                result = guarded_wait(result, failed, arg)
            return _deliver_after(result, list(pending), arg)
    return None


async def _deliver_after(waiting: Any, handlers: list[Handler], arg: Any) -> None:
    """The rest of `_deliver`, from the awaitable a handler returned."""
    try:
        await waiting
    except (exceptions.AddonHalt, exceptions.OptionsError):
        raise
    except Exception as exc:  # noqa: BLE001 - logged and skipped, as mitmproxy does
        logger.error(f"Addon error: {exc}", exc_info=exc)
    rest = _deliver(handlers, arg)
    if rest is not None:
        await rest
