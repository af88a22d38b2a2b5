"""The addon list: commands sit apart from the addons and import them, never the reverse."""

from __future__ import annotations

import subprocess
import sys

COMMAND_MODULES = ("wxgate.cli", "wxgate.audit", "wxgate.check_cert", "wxgate.report",
                   "wxgate.ctl")


def test_the_proxy_addons_load_no_command_module():
    code = ("import sys, wxgate.pipeline\n"
            f"print(' '.join(m for m in {COMMAND_MODULES!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == []
