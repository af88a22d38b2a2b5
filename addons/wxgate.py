"""The wxgate addons, in enforcement order: `mitmdump -s addons/wxgate.py`.

Hook order is list order, so this list is the order in which rules are judged:
identify the app and API, judge the URL, and only then point the request at
its `resolve` target.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("addons") is None:
    # Run as a script from a checkout where wxgate is not installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addons.banner import Banner
from addons.config_loader import ConfigLoader
from addons.domain_guard import DomainGuard
from addons.identify import IdentifyApp
from addons.passthrough import Passthrough
from addons.resolve import Resolve
from addons.state import Runtime


def make_addons(runtime: Runtime | None = None) -> list[object]:
    runtime = runtime or Runtime()
    return [
        ConfigLoader(runtime),
        Passthrough(runtime),
        IdentifyApp(runtime),
        DomainGuard(runtime),
        Resolve(runtime),
        Banner(runtime),
    ]


addons = make_addons()
