"""The mitmproxy script: `mitmdump -s addons/wxgate_addons.py --set wxgate_config=FILE`.

mitmproxy runs a script with its own folder first on `sys.path`, so this file must not be
named like the package (`wxgate`) and imports the package by its installed name. From a
checkout where wxgate is not installed, the package is loaded from this folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("wxgate") is None:
    _here = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location(
        "wxgate", _here / "__init__.py", submodule_search_locations=[str(_here)])
    assert _spec is not None and _spec.loader is not None
    sys.modules["wxgate"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["wxgate"])

from wxgate.pipeline import Pipeline, make_addons  # noqa: E402 - after the package is findable

# One object for mitmproxy to deliver events to; it calls the addons in list order.
addons = [Pipeline(make_addons())]

