"""CPU per allowed call spent in wxgate's own hooks, per addon, without a network.

    python bench/hooks.py [--flows 2000] [--src DIR]

The load benchmark (bench/run.py) measures the proxy as a whole and is noisy on a shared
machine; this one calls the request/response hooks of `make_addons()` directly, in list
order, on synthetic flows of an allowed mini-program call (canonical Referer, a listed
domain that `resolve` maps elsewhere, a JSON 200) over ten keep-alive connections, and
reports the best of 5 rounds of process CPU time. `--src DIR` imports the addons from
another checkout (before/after).
It leaves out mitmproxy's own hook dispatch (about 1 us per addon and event here).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HOOKS = ("requestheaders", "request", "responseheaders", "response")
UPSTREAM = ("127.0.0.1", 9443)  # where `resolve` sends the calls
CONFIG = """\
apps:
  - appid: wx0123456789abcdef
    domains:
      request: [https://api.example.com, https://bench.example.com]
limits: {concurrency: 60}
resolve:
  bench.example.com: 127.0.0.1:9443
log: {path: %(log)s, console: "off"}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--src", help="import wxgate's addons from this checkout")
    opts = parser.parse_args()
    root = Path(opts.src).resolve() if opts.src else Path(__file__).resolve().parent.parent
    if opts.src:
        # The checkout's package is its `addons/` folder, installed as `wxgate`: load it
        # under that name, before the installed one can be imported.
        spec = importlib.util.spec_from_file_location(
            "wxgate", root / "addons" / "__init__.py",
            submodule_search_locations=[str(root / "addons")])
        assert spec is not None and spec.loader is not None
        sys.modules["wxgate"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["wxgate"])
    per_addon, best = asyncio.run(measure(opts.flows))
    print(f"wxgate hooks ({root}): {best:.1f} us CPU per allowed call (best of 5)")
    total = sum(per_addon.values())
    for name, spent in per_addon.most_common():
        print(f"  {spent / total:6.1%} {spent / 5 / opts.flows / 1000:7.1f} us  {name}")
    return 0


async def measure(count: int) -> tuple[Counter[str], float]:
    from mitmproxy.test import taddons, tflow, tutils
    from wxgate import events
    from wxgate.pipeline import make_addons

    work = Path(tempfile.mkdtemp(prefix="wxgate-hooks-"))
    config = work / "wxgate.yaml"
    config.write_text(CONFIG % {"log": work / "log.jsonl"})
    addons = make_addons()
    response = tutils.tresp(content=b'{"ok":true}')
    response.headers["Content-Type"] = "application/json; charset=utf-8"

    # Ten keep-alive connections, as the load benchmark's client opens: a phone's calls
    # share a few connections, and what wxgate keeps per connection is part of the cost.
    clients = [tflow.tclient_conn() for _ in range(10)]
    for client in clients:
        client.sni = "bench.example.com"  # tflow's is "address": a host mismatch

    def allowed_call(i: int) -> Any:
        request = tutils.treq()
        request.url = "https://bench.example.com/api/item"
        request.headers["Host"] = "bench.example.com"
        request.headers["Referer"] = (
            "https://servicewechat.com/wx0123456789abcdef/0/page-frame.html")
        request.headers["User-Agent"] = (
            "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android")
        flow = tflow.tflow(req=request)
        flow.client_conn = clients[i % len(clients)]
        flow.response = None
        return flow

    # Each hook's methods and their names, looked up once: the loop times only the call,
    # and calls what the Pipeline calls (a fail-closed hook without its guard), where the
    # checkout has that.
    unguarded = getattr(importlib.import_module("wxgate.verdict"), "unguarded",
                        lambda method: (method, None))
    steps = [(hook, [(f"{type(addon).__name__}.{hook}", unguarded(method)[0])
                     for addon in addons if (method := getattr(addon, hook, None)) is not None])
             for hook in HOOKS]
    per_addon: Counter[str] = Counter()
    best = float("inf")
    with taddons.context(*addons) as tctx:
        tctx.options.update(wxgate_config=str(config))
        events.configure("off")
        # Each connection's upstream connection is open, as after its first call: the
        # calls after it reuse that one.
        from mitmproxy import connection
        from mitmproxy.proxy.server_hooks import ServerConnectionHookData
        for client in clients:
            upstream = connection.Server(address=UPSTREAM, timestamp_start=time.time())
            for addon in addons:
                if hasattr(addon, "server_connected"):
                    addon.server_connected(ServerConnectionHookData(upstream, client))
        for _ in range(5):
            flows = [allowed_call(i) for i in range(count)]
            began = time.process_time()
            for flow in flows:
                for hook, methods in steps:
                    if hook == "responseheaders":
                        flow.response = response
                    for name, method in methods:
                        start = time.perf_counter_ns()
                        result = method(flow)
                        if inspect.isawaitable(result):
                            await result
                        spent = time.perf_counter_ns() - start
                        per_addon[name] += spent
                # The event loop turns between calls, as live: cancelled timers are
                # cleaned up instead of piling up in its heap.
                await asyncio.sleep(0)
            best = min(best, (time.process_time() - began) / count * 1e6)
            assert not any(f.marked for f in flows), "an allowed call was judged a violation"
        events.SINK.close()
    return per_addon, best


if __name__ == "__main__":
    sys.exit(main())
