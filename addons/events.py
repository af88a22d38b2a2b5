"""The one place structlog is configured, and the violation log it writes.

Every event (violations and proxy-side events alike) goes to the JSONL file, one
object a line, flushed as it is written so that nothing already decided is lost
on SIGTERM; and to the console: pretty on a terminal, JSON otherwise, or off.
Before any of them sees an event, its string fields are cut to `log.max_field_bytes`
(SPEC §5), so a hostile URL or Referer costs the log, the memory behind
`/violations` and the terminal a bounded amount.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import structlog
from structlog.typing import EventDict, WrappedLogger

DEFAULT_MAX_FIELD_BYTES = 2048

# Lone surrogates: what mitmproxy's surrogateescape decoding makes of bytes that are not
# UTF-8 (a URL path, a header). They can't be written as UTF-8, so they become U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
# What JSON leaves raw with ensure_ascii=False but a terminal may still act on: DEL, the
# C1 controls (U+009B is CSI), the line and paragraph separators, the bidi overrides.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# The same, plus the C0 controls (ESC, BEL, CR, backspace...): escaped on a terminal.
_TERMINAL_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def cut_text(text: str, max_bytes: int) -> str:
    """`text` in at most `max_bytes` bytes of UTF-8, never splitting a character.

    A longer value keeps its start and ends with "…[cut: N bytes]", N being the whole
    value's length in UTF-8 bytes; the marker counts toward `max_bytes`.
    """
    if text.isascii() and len(text) <= max_bytes:  # isascii() is O(1) in CPython
        return text
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
        encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = f"…[cut: {len(encoded)} bytes]"
    keep = max(0, max_bytes - len(marker.encode("utf-8")))
    # "ignore" drops only the tail of a character split by the cut: the rest is valid.
    return encoded[:keep].decode("utf-8", "ignore") + marker


def _cut_value(value: Any, max_bytes: int) -> Any:
    if isinstance(value, str):
        return cut_text(value, max_bytes)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {cut_text(str(k), max_bytes): _cut_value(v, max_bytes) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cut_value(v, max_bytes) for v in value]
    # Anything else is written as its str() (the JSON sink's default=str): cut that.
    return cut_text(str(value), max_bytes)


class FieldCut:
    """Cuts every string field of an event (nested ones too); a structlog processor."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> None:
        self.max_bytes = max_bytes

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        limit = self.max_bytes
        return {key: _cut_value(value, limit) for key, value in event_dict.items()}


def json_line(event_dict: EventDict) -> str:
    """One event as one line of JSON, with nothing in it that a terminal acts on.

    The json module escapes the C0 controls; the rest of `_JSON_UNSAFE` is escaped here
    as \\uXXXX, which decodes to the same value (outside strings JSON is plain ASCII).
    """
    line = json.dumps(event_dict, ensure_ascii=False, default=str)
    if line.isascii():
        return line
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", line)


def terminal_safe(text: str) -> str:
    """`text` with every control character written as an escape (\\x1b, \\u202e)."""
    return _TERMINAL_UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
        line = json_line(event_dict)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
                self.written += 1
        return event_dict


class Console:
    """Renders for the terminal: pretty on a TTY, JSON when piped, nothing when off.

    On a TTY the pretty renderer prints string values as they are, so every control
    character in them is escaped first: a URL can't retitle or clear the terminal.
    """

    def __init__(self) -> None:
        self.mode = "pretty"
        self._pretty = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str | bytes:
        if self.mode == "off":
            raise structlog.DropEvent
        if self.mode == "pretty" and sys.stderr.isatty():
            return self.pretty(logger, name, event_dict)
        return json_line(event_dict)

    def pretty(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        # Nested values are rendered with repr(), which escapes control characters itself.
        safe = {key: terminal_safe(value) if isinstance(value, str) else value
                for key, value in event_dict.items()}
        return str(self._pretty(logger, name, safe))


def _approx_size(value: Any) -> int:
    """Roughly the bytes an event holds in memory: cheap, from the (already cut) fields."""
    if isinstance(value, str):
        return 49 + len(value)
    if isinstance(value, dict):
        return 64 + sum(_approx_size(k) + _approx_size(v) + 16 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 56 + sum(_approx_size(v) + 8 for v in value)
    return 32


class RecentViolations:
    """The last violations in memory, numbered, for the control API's /violations.

    Bounded twice (SPEC §5): at most `max_entries` violations and at most `max_bytes`
    of their estimated size; the oldest go first. Sequence numbers are consecutive, so
    the entries held are always the numbers `first_seq..seq`.
    """

    MAX_ENTRIES = 10_000
    MAX_BYTES = 16 * 1024 * 1024
    PAGE_LIMIT = 500
    PAGE_BYTES = 2 * 1024 * 1024

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, dict[str, Any]]] = deque()  # (size, event)
        self.bytes = 0
        self.seq = 0
        self._lock = threading.Lock()

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("event") == "violation":
            size = _approx_size(event_dict) + 48
            with self._lock:
                self.seq += 1
                self._items.append((size, {"seq": self.seq, **event_dict}))
                self.bytes += size
                while self._items and (len(self._items) > self.max_entries
                                       or self.bytes > self.max_bytes):
                    self.bytes -= self._items.popleft()[0]
        return event_dict

    def __len__(self) -> int:
        return len(self._items)

    @property
    def first_seq(self) -> int:
        """The sequence number of the oldest violation held (seq + 1 when none is)."""
        with self._lock:
            return self.seq - len(self._items) + 1

    def page(self, since: str | None, limit: int = PAGE_LIMIT, *,
             max_bytes: int = PAGE_BYTES) -> tuple[list[dict[str, Any]], int, bool]:
        """The held violations after `since`, oldest first, one page at a time.

        `since` is a sequence number (those after it), an ISO timestamp (those at or
        after it), or None/"" (from the oldest held). A page holds at most `limit`
        violations and, past its first, at most `max_bytes` of their estimated size.
        Returns (violations, last, more): `last` is the sequence number to pass as
        `since` for the next page (the newest number when nothing was found), `more`
        says whether a next page has anything in it. ValueError when `limit` < 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._lock:
            first = self.seq - len(self._items) + 1
            if not since:
                start = 0
            elif since.isdigit():
                start = min(max(int(since) + 1 - first, 0), len(self._items))
            else:
                # Timestamps grow with the sequence numbers (barring a clock step back):
                # a scan from the newest end stops at the first one before `since`.
                start = len(self._items)
                for size_and_event in reversed(self._items):
                    if str(size_and_event[1].get("timestamp", "")) < since:
                        break
                    start -= 1
            found: list[dict[str, Any]] = []
            used = 0
            for size, event in islice(self._items, start, None):
                if len(found) == limit or (found and used + size > max_bytes):
                    return found, found[-1]["seq"], True
                found.append(event)
                used += size
            return found, (found[-1]["seq"] if found else self.seq), False

    def since(self, since: str | None) -> list[dict[str, Any]]:
        """Every held violation after a sequence number, or at/after an ISO timestamp."""
        found, _, _ = self.page(since, self.max_entries, max_bytes=self.max_bytes)
        return found


SINK = JsonlSink()
RECENT = RecentViolations()
CONSOLE = Console()
CUT = FieldCut()
_configured = False


def configure(console: str = "pretty", max_field_bytes: int | None = None) -> None:
    """Configure structlog once per process; later calls switch the console mode and,
    when given, the field limit."""
    global _configured
    CONSOLE.mode = console
    if max_field_bytes is not None:
        CUT.max_bytes = max_field_bytes
    if _configured:
        return
    structlog.configure(
        processors=[_timestamp, CUT, RECENT, SINK, CONSOLE],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def logger() -> Any:
    return structlog.get_logger("wxgate")
