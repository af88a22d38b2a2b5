"""mitmproxy's event delivery, without its per-addon machinery.

For every event, mitmproxy's `AddonManager.trigger_event` visits each of the ~36 addons of
its chain through a context manager (`safecall`), a coroutine (`invoke_addon`) and two
generators (`_iter_hooks`, `traverse`), whether or not the addon has the hook: a
proxied call has eight events (four hooks, each followed by `update`), and their
delivery was 0.55 ms of the 1.33 ms of CPU bare mitmdump spends on a judged HTTPS call
(bench/RESULTS.md, sixth stop), most of it on addons with nothing to do. `Dispatch`
delivers the same events to the same hooks in the same order, with the same error
handling, and spends a `getattr` on an addon that has nothing to do.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks

# mitmproxy walks an addon's `addons` whenever it has the attribute, even when it is
# None (and fails there, logged): only a missing attribute or an empty list is skipped.
_NO_SUB_ADDONS: Any = object()


class Dispatch(addonmanager.AddonManager):
    """An `AddonManager` whose `trigger_event` is `AddonManager.trigger_event`, cheaper.

    What mitmproxy's own does, kept: chain order, each addon's hook before its
    sub-addons' (`addons`, read after the hook ran, as mitmproxy's walk reads it; the
    sub-addons, the Pipeline's `-s` scripts, are walked by mitmproxy's own code); a hook
    that raises is logged as "Addon error" and the next addon of the chain runs;
    `AddonHalt` ends the event and `OptionsError` propagates; an awaitable result is
    awaited before the next hook; a module attribute named like the hook is not a hook
    and any other non-callable one is an error. The event's arguments are read once per
    event, not once per hook (a hook gets them, never the event). The logged traceback
    starts at the hook, as mitmproxy's does.
    """

    async def trigger_event(self, event: hooks.Hook) -> None:
        name = event.name
        args: list[Any] | None = None
        for addon in self.chain:
            try:
                func = getattr(addon, name, None)
                if func:
                    if args is None:
                        args = event.args()
                    result = _call(addon, name, func, args)
                    if result is not None and inspect.isawaitable(result):
                        await result
                subs = getattr(addon, "addons", _NO_SUB_ADDONS)
                if subs is _NO_SUB_ADDONS or (type(subs) is list and not subs):
                    continue
                for sub in subs:  # each with its own sub-addons, by mitmproxy's own walk
                    await self.invoke_addon(sub, event)
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged and skipped, as safecall does
                _log(exc)


def _call(addon: object, name: str, func: Any, args: list[Any]) -> Any:
    if not callable(func):
        if isinstance(func, types.ModuleType):
            return None  # an import named like the hook, as mitmproxy allows
        raise exceptions.AddonManagerError(f"Addon handler {name} ({addon}) not callable")
    try:
        return func(*args)
    except StopIteration as stop:
        # mitmproxy calls a hook inside a coroutine, which turns it into this.
        raise RuntimeError("coroutine raised StopIteration") from stop


def _log(exc: Exception) -> None:
    # Starting at the hook, as safecall cuts mitmproxy's own: without this module's
    # frames, nor those of mitmproxy's walk of sub-addons.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    tb = addonmanager.cut_traceback(tb, "invoke_addon")
    addonmanager.logger.error(f"Addon error: {exc}", exc_info=(type(exc), exc, tb))


def install(manager: addonmanager.AddonManager) -> None:
    """Make a master's addon manager a `Dispatch`. It adds no state: only the class of
    the manager `Master.__init__` made changes."""
    if type(manager) is addonmanager.AddonManager:
        manager.__class__ = Dispatch
