"""`mitmdump`, its events delivered by wxgate's `Dispatch` and nothing else of wxgate:
the bench's like-for-like reference (`bare-dispatch`). wxgate against it is what
wxgate's own addons cost; wxgate against bare `mitmdump` also counts what `Dispatch`
saves mitmproxy.

    python bench/mitmdump_dispatch.py [mitmdump arguments]
"""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy.tools import cmdline, main
from mitmproxy.tools.dump import DumpMaster
from wxgate import dispatch


class DispatchMaster(DumpMaster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        dispatch.install(self.addons)


if __name__ == "__main__":
    sys.argv[0] = "mitmdump"  # mitmproxy names itself after argv[0] in its messages
    main.run(DispatchMaster, cmdline.mitmdump, sys.argv[1:])
