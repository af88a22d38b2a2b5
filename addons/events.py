"""The one place structlog is configured, and the violation log it writes.

Every event (violations and proxy-side events alike) goes to the JSONL file, one
object a line, flushed as it is written so that nothing already decided is lost
on SIGTERM; and to the console: pretty on a terminal, JSON otherwise, or off. The
pretty console is laid out for an operator at a 100-column terminal (`pretty_lines`)
and keeps the live status line clear of everything else printed (`Console.status`).
Before any of them sees an event, its string fields are cut to `log.max_field_bytes`
(SPEC §5), so a hostile URL or Referer costs the log, the memory behind
`/violations` and the terminal a bounded amount.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import textwrap
import threading
import unicodedata
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


# --- the pretty console -------------------------------------------------------------------------

# The layout is made to be read at 100 columns; a wider terminal gives the URL more room.
DEFAULT_WIDTH = 100
MIN_WIDTH, MAX_WIDTH = 60, 200
MIN_URL_COLUMNS = 24
_SEVERITY_COLUMN = 7  # "warning"
_RULE_COLUMN = 20  # "concurrency.exceeded"; a longer id pushes the rest right
_OUTCOME_COLUMN = 8  # "reported"
# Under the rule: where the second line (errMsg, detail) starts.
_INDENT = " " * (_SEVERITY_COLUMN + 1)
# Rules whose detail only restates the URL and the errMsg for a plain wx.request call.
_DETAIL_RESTATES_LINE = frozenset({"scheme.insecure", "domain.not_listed", "domain.forbidden",
                                   "domain.localhost"})
_DETAIL_LINES = 3
# Event fields that are lists of sentences: one indented line each.
_SENTENCE_LISTS = frozenset({"problems"})
_LEVELS = {"warn": "warning", "exception": "error", "critical": "error", "msg": "info"}

_RESET = "\x1b[0m"
_STYLES = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "info": "\x1b[36m",
           "bold": "\x1b[1m", "dim": "\x1b[2m"}


def columns(text: str) -> int:
    """How many terminal columns `text` takes: wide East Asian characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else
               0 if unicodedata.combining(c) else 1 for c in text)


def _take_columns(text: str, width: int, from_end: bool = False) -> str:
    taken: list[str] = []
    used = 0
    for char in reversed(text) if from_end else text:
        used += columns(char)
        if used > width:
            break
        taken.append(char)
    return "".join(reversed(taken) if from_end else taken)


def cut_middle(text: str, width: int) -> str:
    """`text` in at most `width` columns, its middle replaced by "…" when it is longer.

    A URL keeps its scheme and host when they leave room for some of its end: what was
    called, then how the path ends.
    """
    if columns(text) <= width:
        return text
    room = max(width - 1, 2)
    head = room - room // 2
    authority = text.find("/", text.find("://") + 3) if "://" in text else -1
    if 0 < authority and columns(text[:authority]) <= room - 6:
        head = max(head, columns(text[:authority]) + 1)
    head_text = _take_columns(text, head)
    return head_text + "…" + _take_columns(text, room - columns(head_text), from_end=True)


def _text(value: Any) -> str:
    """A field value as one escaped line: lists comma-separated, mappings as key:value."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{_text(k)}:{_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return terminal_safe(str(value))


def detail_adds(event: EventDict) -> bool:
    """Whether a violation's detail says more than its first line and errMsg already do.

    For a plain wx.request call, the URL rules' detail names the host (in the URL), the
    list (the errMsg's interface) and the scheme: nothing new. For any other interface it
    says how the call was judged to be one, which is what surprises people.
    """
    detail = event.get("detail")
    if not detail:
        return False
    return not (event.get("rule") in _DETAIL_RESTATES_LINE and event.get("api") == "request")


def pretty_lines(event: EventDict, level: str = "info", width: int = DEFAULT_WIDTH,
                 colors: bool = False) -> list[str]:
    """One event as the lines the pretty console prints, every value escaped.

    A violation: severity, rule, outcome, method and URL (cut in the middle to fit
    `width`), device and platform; then, indented under the rule, the errMsg the mini
    program sees and the detail where it adds something. Any other event: level, event
    name, then its fields as key=value in the order they were logged. (The time is in the
    log file; the terminal is read as it happens.)
    """
    def paint(text: str, style: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if colors and style in _STYLES else text

    if event.get("event") != "violation":
        level = _LEVELS.get(level, level)
        name = _text(event.get("event"))
        head = f"{level:<{_SEVERITY_COLUMN}} {name:<{_RULE_COLUMN}} "
        room = max(width - len(head), 20)
        fields, sentences = [], []
        for key, value in event.items():
            if key in ("timestamp", "event"):
                continue
            if key in _SENTENCE_LISTS and isinstance(value, list | tuple):
                sentences += [_INDENT + cut_middle(_text(v), max(width - len(_INDENT), 20))
                              for v in value]
                continue
            # Wrapped at spaces below; a word too long for a line (a URL) is cut instead.
            words = (cut_middle(word, room) for word in _text(value).split(" "))
            fields.append(f"{terminal_safe(key)}={' '.join(words)}")
        wrapped = textwrap.wrap(" ".join(fields), room, break_long_words=False,
                                break_on_hyphens=False) or [""]
        first = (f"{paint(f'{level:<{_SEVERITY_COLUMN}}', level)} "
                 f"{paint(f'{name:<{_RULE_COLUMN}}', 'bold')} {wrapped[0]}")
        return [first.rstrip(), *(" " * len(head) + line for line in wrapped[1:]),
                *sentences]

    severity = _text(event.get("severity") or "error")
    rule = _text(event.get("rule"))
    outcome = _text(event.get("action"))
    method = _text(event.get("method")) if event.get("method") else ""
    url = _text(event.get("url")) if event.get("url") else ""
    device = " ".join(_text(event[key]) for key in ("client", "platform") if event.get(key))
    head = (f"{severity:<{_SEVERITY_COLUMN}} {rule:<{_RULE_COLUMN}} "
            f"{outcome:<{_OUTCOME_COLUMN}} ")
    call = f"{method} " if method else ""
    tail = f"  {device}" if device else ""
    room = max(width - columns(head) - columns(call) - columns(tail), MIN_URL_COLUMNS)
    url = cut_middle(url, room)
    pad = " " * (room - columns(url)) if tail else ""
    first = (f"{paint(f'{severity:<{_SEVERITY_COLUMN}}', severity)} "
             f"{paint(f'{rule:<{_RULE_COLUMN}}', 'bold')} {outcome:<{_OUTCOME_COLUMN}} "
             f"{call}{url}{pad}{tail}")
    err_msg = _text(event["errMsg"]) if event.get("errMsg") else ""
    line_room = max(width - len(_INDENT), 20)
    # At most _DETAIL_LINES lines: a 2 KB Referer in a detail is for the log file.
    detail = cut_middle(_text(event["detail"]), _DETAIL_LINES * line_room - columns(err_msg)
                        - 8) if detail_adds(event) else ""
    second = textwrap.wrap(" — ".join(part for part in (err_msg, detail) if part), line_room,
                           break_long_words=True, break_on_hyphens=False)
    if second and err_msg and second[0].startswith(err_msg):
        second[0] = paint(err_msg, severity) + second[0][len(err_msg):]
    return [first.rstrip(), *(_INDENT + line for line in second)]


def _terminal_width(stream: IO[str]) -> int:
    """The terminal's width, within MIN_WIDTH..MAX_WIDTH. A terminal that does not say
    (a bare pseudo-terminal reports 0) gets MAX_WIDTH: nothing is cut that need not be."""
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return DEFAULT_WIDTH
    return min(max(width, MIN_WIDTH), MAX_WIDTH) if width else MAX_WIDTH


def _colors_wanted(stream: IO[str]) -> bool:
    """Colors on a terminal, unless NO_COLOR is set (no-color.org) or TERM is dumb."""
    return (stream.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")


class Console:
    """Renders for the terminal: pretty on a TTY, JSON when piped, nothing when off.

    It also owns the live status line (the running summary at the foot of the terminal):
    every other line printed, its own or anyone's through `TerminalStream` or the logging
    handlers, clears the status line first, and the status line is drawn again after it.
    """

    def __init__(self) -> None:
        self.mode = "pretty"
        self._lock = threading.RLock()
        self._status = ""
        self._shown = False
        self._at_line_start = True
        self._redraw_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_filter: _ClearBeforeLog | None = None

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str | bytes:
        if self.mode == "off":
            raise structlog.DropEvent
        if _is_tty(sys.stderr):
            self.before_output()
            if self.mode == "pretty":
                return self.pretty(logger, name, event_dict)
        return json_line(event_dict)

    def pretty(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        stream = sys.stderr
        return "\n".join(pretty_lines(event_dict, name, _terminal_width(stream),
                                      _colors_wanted(stream)))

    # --- the status line ----------------------------------------------------------------

    def status(self, line: str) -> None:
        """Show `line` as the live status line (on a TTY only), replacing the last one.

        Called from the event loop; the first call also makes mitmproxy's own log lines
        clear the status line before they print.
        """
        stream = _underlying(sys.stderr)
        if not _is_tty(stream):
            return
        with self._lock:
            if self._log_filter is None:
                self._guard_logging()
            if self._loop is None:
                with contextlib.suppress(RuntimeError):  # no loop: redrawn on the next call
                    self._loop = asyncio.get_running_loop()
            width = _terminal_width(stream)
            line = cut_middle(terminal_safe(line), width - 1)
            if line == self._status and self._shown:
                return
            self._status = line
            if self._at_line_start:
                self._draw(stream)

    def clear_status(self) -> None:
        """Remove the status line for good (on exit), leaving the cursor where it began."""
        with self._lock:
            self._hide()
            self._status = ""

    def before_output(self) -> None:
        """Another line is about to be printed on the terminal: take the status line away
        until it is."""
        with self._lock:
            if not self._shown:
                return
            self._hide()
            self._schedule_redraw()

    def after_output(self, text: str) -> None:
        """`text` reached the terminal: once a line has ended, the status line comes back."""
        with self._lock:
            self._at_line_start = text.endswith("\n")
            if self._at_line_start and self._status and not self._shown:
                self._schedule_redraw()

    def _hide(self) -> None:
        if self._shown:
            stream = _underlying(sys.stderr)
            stream.write("\r\x1b[2K")
            stream.flush()
            self._shown = False

    def _draw(self, stream: IO[str]) -> None:
        # \r + clear-to-end keeps it one line, whatever was there.
        stream.write(f"\r\x1b[2K{self._status}")
        stream.flush()
        self._shown = True

    def _schedule_redraw(self) -> None:
        if self._redraw_due or self._loop is None or self._loop.is_closed():
            return
        self._redraw_due = True
        try:
            self._loop.call_soon_threadsafe(self._redraw)
        except RuntimeError:  # the loop has stopped
            self._redraw_due = False

    def _redraw(self) -> None:
        with self._lock:
            self._redraw_due = False
            if self._status and not self._shown and self._at_line_start:
                self._draw(_underlying(sys.stderr))

    def _guard_logging(self) -> None:
        """mitmproxy prints its log through handlers on the root logger: those that write
        to a terminal clear the status line first."""
        self._log_filter = _ClearBeforeLog(self)
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "file", None) or getattr(handler, "stream", None)
            if stream is not None and _is_tty(stream):
                handler.addFilter(self._log_filter)


class _ClearBeforeLog(logging.Filter):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def filter(self, record: logging.LogRecord) -> bool:
        self.console.before_output()
        return True


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _underlying(stream: Any) -> IO[str]:
    while isinstance(stream, TerminalStream):
        stream = stream.wrapped
    result: IO[str] = stream
    return result


class TerminalStream:
    """A stdout or stderr that clears the console's status line before text reaches the
    terminal (mitmproxy's flow lines and log, `print`); everything else is the stream's."""

    def __init__(self, wrapped: IO[str], console: Console) -> None:
        self.wrapped = wrapped
        self.console = console
        self._tty = _is_tty(wrapped)

    def write(self, text: str) -> int:
        if self._tty and text:
            self.console.before_output()
        written = self.wrapped.write(text)
        if self._tty and text:
            self.console.after_output(text)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def take_terminal() -> None:
    """Route sys.stdout and sys.stderr through the console when stderr is a terminal, so
    that every line printed (by wxgate or mitmproxy) keeps clear of the status line. Call
    before mitmproxy starts: its log and flow printers keep the streams they find."""
    if not _is_tty(sys.stderr):
        return
    if not isinstance(sys.stdout, TerminalStream):
        sys.stdout = TerminalStream(sys.stdout, CONSOLE)
    if not isinstance(sys.stderr, TerminalStream):
        sys.stderr = TerminalStream(sys.stderr, CONSOLE)


class _DropConnectionChatter(logging.Filter):
    """mitmproxy's per-connection lines (client connect, client disconnect, server
    connect...) are logged at info by its proxy server; its warnings and errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


CONNECTION_LOGGER = "mitmproxy.proxy.server"


def mute_connection_log() -> None:
    """Drop mitmproxy's connection chatter from every log output (`wxgate run` without -v)."""
    logger_ = logging.getLogger(CONNECTION_LOGGER)
    if not any(isinstance(f, _DropConnectionChatter) for f in logger_.filters):
        logger_.addFilter(_DropConnectionChatter())


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
