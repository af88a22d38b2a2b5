"""Takes the heap built at startup out of the cyclic garbage collector's walks.

mitmproxy, its addons and wxgate's config and rule tables are about 100,000 objects that
live as long as the process. Python's full collections, two in every few thousand proxied
calls, walked all of them each time: 15-20 us of each call's CPU at c=10 (bench/
RESULTS.md). Frozen once the proxy runs, they sit in the collector's permanent generation;
whatever is made afterwards, each call's flow and wxgate's records of it, is collected as
before. A frozen object that later becomes unreachable is still freed by its reference
count; only a cycle of frozen objects (a config replaced by a reload, at most) is never
collected.
"""

from __future__ import annotations

import gc


class StartupHeap:
    def running(self) -> None:
        # Once per process: a second master in it (the tests make many) adds no heap of
        # its own worth freezing.
        if gc.get_freeze_count() == 0:
            gc.collect()  # what startup left unreachable is freed, not frozen for good
            gc.freeze()
