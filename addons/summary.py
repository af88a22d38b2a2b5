"""The operator's view on the terminal: a live one-line summary while running (only on
a TTY), and a final summary on exit (always)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from .state import Runtime

INTERVAL_S = 1.0


def summary_line(runtime: Runtime) -> str:
    by_severity: Counter[str] = Counter()
    for (_, severity, _), n in runtime.violation_counts.items():
        by_severity[severity] += n
    inflight = sum(runtime.inflight.counts().values())
    return (f"flows {runtime.flows} | blocked {runtime.blocked} | violations: "
            f"{by_severity['error']} error, {by_severity['warning']} warning, "
            f"{by_severity['info']} info | in flight {inflight}")


def final_summary(runtime: Runtime) -> list[str]:
    lines = [f"wxgate summary: {summary_line(runtime)}"]
    for rule, n in runtime.violations.most_common():
        lines.append(f"  {rule}: {n}")
    return lines


class Summary:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task[None] | None = None

    def running(self) -> None:
        if sys.stderr.isatty() and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._live())

    async def _live(self) -> None:
        last = ""
        while True:
            line = summary_line(self.runtime)
            if line != last:
                # \r + clear-to-end keeps it one line between mitmproxy's own output.
                sys.stderr.write(f"\r\x1b[2K{line}")
                sys.stderr.flush()
                last = line
            await asyncio.sleep(INTERVAL_S)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            sys.stderr.write("\r\x1b[2K")
        for line in final_summary(self.runtime):
            print(line, flush=True)
