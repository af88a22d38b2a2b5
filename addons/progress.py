"""A one-line progress bar on stderr for long offline work (audit).

Thirty lines of its own: a dependency for a bar this simple would cost more than it saves.
"""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = 0

    def update(self, label: str, done: int, total: int, unit: str = "flows",
               force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1 and done < total:
            return  # a redraw per flow would cost more than the audit
        self._last = now
        ratio = done / total if total else 1.0
        filled = int(self.WIDTH * ratio)
        amount = (f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if unit == "bytes"
                  else f"{done:,}/{total:,} {unit}")
        line = f"{label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {ratio:4.0%} {amount}"
        self.stream.write("\r" + line.ljust(self._shown))
        self.stream.flush()
        self._shown = len(line)

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
