"""The wxgate addons, in enforcement order: `mitmdump -s addons/wxgate.py`.

Hook order is list order, so this list is the order in which rules are judged:
answer the control host, identify the app and API, check the Referer, judge the
URL, take a socket or in-flight slot (only for calls that passed), and only then
point the request at its `resolve` target.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("addons") is None:
    # Run as a script from a checkout where wxgate is not installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addons.banner import Banner
from addons.concurrency_limit import ConcurrencyLimit
from addons.config_loader import ConfigLoader
from addons.control_api import ControlApi
from addons.domain_guard import DomainGuard
from addons.identify import IdentifyApp
from addons.passthrough import Passthrough
from addons.referer_guard import RefererGuard
from addons.resolve import Resolve
from addons.socket_limit import SocketLimit
from addons.state import Runtime


def make_addons(runtime: Runtime | None = None) -> list[object]:
    runtime = runtime or Runtime()
    return [
        ConfigLoader(runtime),
        ControlApi(runtime),
        Passthrough(runtime),
        IdentifyApp(runtime),
        RefererGuard(runtime),
        DomainGuard(runtime),
        SocketLimit(runtime),
        ConcurrencyLimit(runtime),
        Resolve(runtime),
        Banner(runtime),
    ]


addons = make_addons()
