"""mitmproxy's event delivery, without its per-addon machinery.

For every event, mitmproxy's `AddonManager.trigger_event` visits each of the ~35 addons of
its chain through a context manager (`safecall`), a coroutine (`invoke_addon`) and two
generators (`_iter_hooks`, `traverse`), whether or not the addon has the hook: about 2 us
per addon and event, some 500 us of a proxied call's eight events (four hooks, each
followed by `update`), most of it on addons with nothing to do. `Dispatch` delivers the
same events to the same hooks in the same order, with the same error handling, and
spends a `getattr` on an addon that has nothing to do.
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

    What mitmproxy's own does, kept: chain order, each addon before its sub-addons
    (`addons`); a hook that raises is logged as "Addon error" and the next addon runs;
    `AddonHalt` ends the event and `OptionsError` propagates; an awaitable result is
    awaited before the next hook; a module attribute named like the hook is not a hook
    and any other non-callable one is an error. An addon with sub-addons is delivered
    to by mitmproxy's own `invoke_addon`, so its tree is walked exactly as before.
    """

    async def trigger_event(self, event: hooks.Hook) -> None:
        name = event.name
        args: list[Any] | None = None
        for addon in self.chain:
            try:
                subs = getattr(addon, "addons", _NO_SUB_ADDONS)
                if subs is not _NO_SUB_ADDONS and not (type(subs) is list and not subs):
                    with addonmanager.safecall():
                        await self.invoke_addon(addon, event)
                    continue
                func = getattr(addon, name, None)
                if not func:
                    continue
                if not callable(func):
                    if isinstance(func, types.ModuleType):
                        continue  # an import named like the hook, as mitmproxy allows
                    raise exceptions.AddonManagerError(
                        f"Addon handler {name} ({addon}) not callable")
                if args is None:
                    args = event.args()
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged and skipped, as safecall does
                addonmanager.logger.error(f"Addon error: {exc}", exc_info=exc)


def install(manager: addonmanager.AddonManager) -> None:
    """Make a master's addon manager a `Dispatch`. It adds no state: only the class of
    the manager `Master.__init__` made changes."""
    if type(manager) is addonmanager.AddonManager:
        manager.__class__ = Dispatch
