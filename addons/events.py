"""The one place structlog is configured, and the violation log it writes.

Every event (violations and proxy-side events alike) goes to the JSONL file, one
object a line, flushed as it is written so that nothing already decided is lost
on SIGTERM; and to the console: pretty on a terminal, JSON otherwise, or off.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog
from structlog.typing import EventDict, WrappedLogger


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    # Rebuilt so that timestamp and event lead the line, as SPEC §5 shows them.
    return {"timestamp": stamp, "event": event_dict.pop("event"), **event_dict}


class JsonlSink:
    """Appends each event to the violation log; a structlog processor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self.path: Path | None = None
        self.written = 0

    def open(self, path: str | Path) -> None:
        path = Path(path)
        with self._lock:
            if self.path == path.resolve() and self._file is not None:
                return
            if self._file is not None:
                self._file.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
            self.path = path.resolve()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self.path = None, None

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        line = json.dumps(event_dict, ensure_ascii=False, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
                self.written += 1
        return event_dict


class Console:
    """Renders for the terminal: pretty on a TTY, JSON when piped, nothing when off."""

    def __init__(self) -> None:
        self.mode = "pretty"
        self._pretty = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        self._json = structlog.processors.JSONRenderer(ensure_ascii=False, default=str)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str | bytes:
        if self.mode == "off":
            raise structlog.DropEvent
        if self.mode == "pretty" and sys.stderr.isatty():
            return self._pretty(logger, name, event_dict)
        return self._json(logger, name, event_dict)


class RecentViolations:
    """The last violations in memory, numbered, for the control API's /violations."""

    def __init__(self, size: int = 10_000) -> None:
        self.items: deque[dict[str, Any]] = deque(maxlen=size)
        self.seq = 0
        self._lock = threading.Lock()

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("event") == "violation":
            with self._lock:
                self.seq += 1
                self.items.append({"seq": self.seq, **event_dict})
        return event_dict

    def since(self, since: str | None) -> list[dict[str, Any]]:
        """After a sequence number, or at/after an ISO timestamp; all when None."""
        with self._lock:
            items = list(self.items)
        if not since:
            return items
        if since.isdigit():
            return [e for e in items if e["seq"] > int(since)]
        return [e for e in items if str(e.get("timestamp", "")) >= since]


SINK = JsonlSink()
RECENT = RecentViolations()
CONSOLE = Console()
_configured = False


def configure(console: str = "pretty") -> None:
    """Configure structlog once per process; later calls only switch the console mode."""
    global _configured
    CONSOLE.mode = console
    if _configured:
        return
    structlog.configure(
        processors=[_timestamp, RECENT, SINK, CONSOLE],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def logger() -> Any:
    return structlog.get_logger("wxgate")
