"""Reading captures for the offline audit: mitmproxy flow files and HAR, indexed by start time.

A flow file is indexed first (start time, end time and byte offset, 24 bytes a flow, and
the sort order when the file is not already in start order) and then read again one flow
at a time in start order, whole or in parts (`Capture.parts`) that processes replay side by
side. A HAR is one JSON document, parsed whole as mitmproxy's own reader does.
Every read is bounded: a length prefix or a file beyond the limits is refused unread, and
a broken input is one sentence (`InputError`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mitmproxy import http
from mitmproxy.io import FlowReader, har

from .progress import Progress
from .report import open_input

# What one read may hold: a flow record (tnetstring) or a whole HAR is read into memory
# before it is parsed, so a length prefix or a file beyond these is refused unread.
MAX_RECORD_BYTES = 256 * 1024 * 1024
MAX_HAR_BYTES = 256 * 1024 * 1024
_MIB = 1024 * 1024


class InputError(Exception):
    """An input that can't be audited (or audited only in part); one sentence."""


# --- reading captures -------------------------------------------------------------------------

def start_of(flow: http.HTTPFlow) -> float:
    return float(flow.request.timestamp_start or flow.client_conn.timestamp_start
                 or flow.timestamp_created)


def end_of(flow: http.HTTPFlow) -> float:
    """When the call stopped being in flight; inf when the capture never saw it end."""
    start = start_of(flow)
    ends = [start]
    if flow.websocket is not None:
        if flow.websocket.timestamp_end is not None:
            ends.append(flow.websocket.timestamp_end)
        elif flow.error is None:
            return math.inf  # still open when the capture was saved
    elif flow.response is None and flow.error is None:
        return math.inf
    if flow.response is not None:
        ends.append(flow.response.timestamp_end or flow.response.timestamp_start or start)
    if flow.error is not None and flow.error.timestamp:
        ends.append(flow.error.timestamp)
    return max(ends)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def _before(n: int, word: str, many: str | None = None) -> str:
    if n == 0:
        return f"no {word} before it could be read"
    return f"the {plural(n, word, many)} before it {'is' if n == 1 else 'are'} still audited"


@dataclass(frozen=True)
class Part:
    """A stretch of a capture, in start order, that one process judges.

    Positions count flows in start order. The flows in [warm, first) started before this
    part but are still in flight when its first flow starts (by the index's end times):
    they are replayed without a word, so that the in-flight and socket counts at `first`
    are the ones a replay of everything before would hold. `until` is when the next
    part's first flow starts (inf for the last part).
    """

    first: int
    last: int
    warm: int
    until: float = math.inf


@dataclass
class Capture:
    """One input file, indexed: how many HTTP flows, their start times, where it broke."""

    path: Path
    kind: str  # "flows" | "har"
    starts: array[float] = field(default_factory=lambda: array("d"))
    # When each call stopped being in flight (inf: never, in this capture), read from the
    # record without loading it: where a part's cut goes (checked there, `replay`) and the
    # capture's last moment. Flow files only.
    ends: array[float] = field(default_factory=lambda: array("d"))
    offsets: array[int] = field(default_factory=lambda: array("q"))  # flow files only
    entries: list[Any] = field(default_factory=list)  # HAR only
    damage: str | None = None
    non_http: int = 0
    _order: Sequence[int] | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return len(self.starts)

    def order(self) -> Sequence[int]:
        """The flows' indexes in the order their requests started (computed once)."""
        if self._order is None:
            starts = self.starts
            if all(starts[i] <= starts[i + 1] for i in range(len(starts) - 1)):
                self._order = range(self.count)
            else:
                self._order = array("q", sorted(range(self.count), key=starts.__getitem__))
        return self._order

    def last_moment(self) -> float:
        """The latest time the capture shows (a start, or an end it recorded)."""
        finite = (end for end in self.ends if end < math.inf)
        return max(max(self.starts, default=0.0), max(finite, default=0.0))

    def whole(self) -> Part:
        return Part(0, self.count, 0)

    def parts(self, wanted: int, min_flows: int = 5000) -> list[Part]:
        """At most `wanted` parts of about equal size, none under `min_flows` flows.

        A part starts warm at the earliest flow still in flight when its first flow
        starts; a call the capture never saw end is in flight to the end, so it makes the
        next part replay everything from it (correct, only slower). A HAR is one part.
        """
        count = min(wanted, self.count // max(min_flows, 1))
        if self.kind != "flows" or count < 2 or len(self.ends) != self.count:
            return [self.whole()]
        order, starts, ends = self.order(), self.starts, self.ends
        firsts = [round(i * self.count / count) for i in range(count)]
        parts = []
        for n, first in enumerate(firsts):
            last = firsts[n + 1] if n + 1 < count else self.count
            begins = starts[order[first]]
            warm = next((j for j in range(first) if ends[order[j]] > begins), first)
            until = starts[order[last]] if last < self.count else math.inf
            parts.append(Part(first, last, warm, until))
        return parts

    def flows(self, part: Part | None = None) -> Iterator[tuple[int, http.HTTPFlow]]:
        """The HTTP flows of `part` (default: all) before any damage, in the order their
        requests started, each with its position in that order.

        A flow that can't be loaded ends the stream and sets `damage`, so that the flows
        already in flight are still finished and reported.
        """
        part = part or self.whole()
        order = self.order()
        if self.kind == "har":
            for position in range(part.warm, part.last):
                i = order[position]
                entry, self.entries[i] = self.entries[i], None  # converted once, then let go
                yield position, har.request_to_flow(entry)
            return
        try:
            handle = open_input(self.path, "a capture file", InputError)
        except InputError as exc:
            self.damage = f"{exc} (it changed while it was being audited)"
            return
        with handle as fo:
            for position in range(part.warm, part.last):
                i = order[position]
                fo.seek(self.offsets[i])  # in buffer, no system call, when reading in order
                changed = "the file changed while it was being audited"
                try:
                    loaded = next(iter(FlowReader(fo).stream()))
                    reason = "" if isinstance(loaded, http.HTTPFlow) else changed
                except StopIteration:
                    reason = changed
                except Exception as exc:  # noqa: BLE001 - any failure of mitmproxy's reader
                    reason = _reason(exc) or changed
                if reason:
                    before = "no flow was audited before it" if not position else (
                        f"the {plural(position, 'flow')} that started before it "
                        f"{'is' if position == 1 else 'are'} still audited")
                    self.damage = (f"{self.path}: the flow at byte {self.offsets[i]} cannot "
                                   f"be loaded ({reason}); {before}.")
                    return
                assert isinstance(loaded, http.HTTPFlow)
                yield position, loaded


def open_capture(path: Path, progress: Progress | None = None) -> Capture:
    """Index one input; InputError when nothing in it can be audited.

    A file damaged after some flows is returned with `damage` set: the flows before the
    damage are audited and the damage is reported.
    """
    name = str(path)
    fo = open_input(path, "a capture file", InputError)
    with fo:
        size = os.fstat(fo.fileno()).st_size
        if size == 0:
            raise InputError(f"{name} is empty (0 bytes): there are no flows to audit.")
        head = fo.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"{"):
            capture = _index_har(path, fo, size)
        else:
            capture = _index_flow_file(path, fo, size, progress)
    if capture.count == 0 and capture.damage is None:
        what = "HTTP flows" if capture.kind == "flows" else "entries"
        raise InputError(f"{name} holds no {what}: there is nothing to audit.")
    if capture.count == 0 and capture.damage is not None:
        raise InputError(capture.damage)
    return capture


def _index_flow_file(path: Path, fo: BinaryIO, size: int, progress: Progress | None
                     ) -> Capture:
    """Start time, end time and offset of each HTTP flow, without building the flows.

    Only the record framing, each record's `type` and the timestamps are parsed: a full
    load per flow would double the cost of the audit. A record this scan can't place
    is loaded the full way, by mitmproxy's reader.
    """
    capture = Capture(path, "flows")
    records = 0
    while True:
        offset = fo.tell()
        try:
            found = _scan_record(fo, size)
        except (ValueError, IndexError, TypeError, RecursionError) as exc:
            capture.damage = _damage(str(path), records, offset, size, exc, fo.tell() >= size)
            break
        if found is None:
            break
        kind, start, end = found
        if start is None and kind == "http":
            fo.seek(offset)
            try:
                loaded = next(iter(FlowReader(fo).stream()))
            except Exception as exc:  # noqa: BLE001 - any failure of mitmproxy's reader
                capture.damage = _damage(str(path), records, offset, size, exc,
                                         fo.tell() >= size)
                break
            kind = "http" if isinstance(loaded, http.HTTPFlow) else "other"
            if isinstance(loaded, http.HTTPFlow):
                start, end = start_of(loaded), end_of(loaded)
        records += 1
        if kind == "http" and start is not None:
            capture.starts.append(start)
            capture.ends.append(end)
            capture.offsets.append(offset)
        else:
            capture.non_http += 1
        if progress is not None:
            progress.update(f"reading {path.name}", fo.tell(), size, unit="bytes")
    return capture


# What the index reads of a flow record: its type, and the timestamps `start_of` and
# `end_of` use, each nested dict walked for its own keys only.
_INDEXED: dict[str, Any] = {
    "type": None,
    "request": {"timestamp_start": None},
    "response": {"timestamp_start": None, "timestamp_end": None},
    "error": {"timestamp": None},
    "websocket": {"timestamp_end": None},
}
_DICT, _NULL, _FLOAT, _INT, _STR, _BYTES = (ord(c) for c in "}~^#;,")


def _scan_record(fo: BinaryIO, size: int) -> tuple[str, float | None, float] | None:
    """One flow record's type, request start and end (as `end_of`), or None at the end
    of the file.

    Mirrors `tnetstring.load`'s framing checks (and its messages); ValueError when the
    record is not a flow record. A length prefix is checked against the `size` of the
    file and MAX_RECORD_BYTES before anything is read: a hostile prefix can't make it
    read past the file or allocate gigabytes.
    """
    char = fo.read(1)
    if char == b"":
        return None
    digits = b""
    while char.isdigit():
        digits += char
        if len(digits) > 12:
            raise ValueError("not a tnetstring: absurdly large length prefix")
        char = fo.read(1)
    if char != b":":
        raise ValueError("not a tnetstring: missing or invalid length prefix")
    length = int(digits)
    if fo.tell() + length + 1 > size:
        fo.seek(0, os.SEEK_END)  # reported as a file cut short, as a short read would be
        raise ValueError("not a tnetstring: the record ends early")
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"a record of {length:,} bytes, over the {_amount(MAX_RECORD_BYTES)} "
                         "that the audit reads")
    payload = fo.read(length)
    tag = fo.read(1)
    if len(payload) < length or tag == b"":
        raise ValueError("not a tnetstring: the record ends early")
    if tag != b"}":
        raise ValueError("not a flow record: not a dictionary")
    found = _fields(payload, 0, len(payload), _INDEXED)
    kind = found.get("type")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind or "unknown")
    start = _number((found.get("request") or {}).get("timestamp_start"))
    return kind, start, _end(start, found) if start is not None else math.inf


def _fields(data: bytes, start: int, end: int, wanted: dict[str, Any]) -> dict[str, Any]:
    """The `wanted` keys of the tnetstring dict whose payload is data[start:end]; every
    other value is skipped over by its length prefix, unparsed. A wanted key maps to
    None (its value, a scalar) or to the keys wanted of its value, a dict (None when the
    value is null). By offsets into one bytes object: mitmproxy's `tnetstring.pop` slices
    a memoryview per item and reads length prefixes a byte at a time, which made this
    scan a third of the time it takes to load the flows."""
    found: dict[str, Any] = {}
    pos = start
    while pos < end and len(found) < len(wanted):
        pos, key_start, key_stop, _ = _item(data, pos, end)
        pos, value_start, value_stop, tag = _item(data, pos, end)
        name = data[key_start:key_stop].decode("utf-8", "replace")
        if name not in wanted:
            continue
        inner = wanted[name]
        if inner is None:
            found[name] = _scalar(tag, data[value_start:value_stop])
        elif tag == _DICT:
            found[name] = _fields(data, value_start, value_stop, inner)
        elif tag == _NULL:
            found[name] = None
    return found


def _item(data: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """One tnetstring item at `pos`: where the next begins, its payload's bounds, its tag."""
    colon = data.find(b":", pos, pos + 13)
    digits = data[pos:colon]
    if not 0 <= colon < end or not digits.isdigit():
        raise ValueError("not a tnetstring: missing or invalid length prefix")
    start = colon + 1
    stop = start + int(digits)
    if stop >= end:
        raise ValueError(f"not a tnetstring: invalid length prefix: {int(digits)}")
    return stop + 1, start, stop, data[stop]


def _scalar(tag: int, raw: bytes) -> Any:
    if tag == _FLOAT:
        return float(raw)
    if tag == _INT:
        return int(raw)
    if tag == _STR:
        return raw.decode("utf-8", "replace")
    if tag == _BYTES:
        return raw
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _end(start: float, found: dict[str, Any]) -> float:
    """`end_of`, from a record's fields."""
    response, error, websocket = found.get("response"), found.get("error"), found.get(
        "websocket")
    ends = [start]
    if websocket is not None:
        closed = _number(websocket.get("timestamp_end"))
        if closed is not None:
            ends.append(closed)
        elif error is None:
            return math.inf
    elif response is None and error is None:
        return math.inf
    if response is not None:
        ends.append(_number(response.get("timestamp_end"))
                    or _number(response.get("timestamp_start")) or start)
    if error is not None and (failed := _number(error.get("timestamp"))):
        ends.append(failed)
    return max(ends)


def _amount(size: int) -> str:
    return f"{size / _MIB:,.0f} MiB" if size >= _MIB else f"{size:,} bytes"


def _reason(exc: BaseException) -> str:
    """Why a record could not be read, in a few words."""
    cause = exc.__cause__ or exc
    if isinstance(cause, RecursionError):
        return "nested too deeply to read"
    if isinstance(cause, MemoryError):
        return "too large to hold in memory"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"a number of more than {sys.get_int_max_str_digits()} digits"
    return str(cause) or type(cause).__name__


def _damage(name: str, records: int, offset: int, size: int, exc: Exception, at_eof: bool
            ) -> str:
    reason = _reason(exc)
    if records == 0 and offset == 0:
        return (f"{name} is neither a mitmproxy flow file nor a HAR: it does not start with a "
                f"flow record ({reason}).")
    if at_eof:
        return (f"{name} is cut short: flow {records + 1}, which starts at byte {offset}, ends "
                f"with the file at byte {size}; {_before(records, 'flow')}.")
    return (f"{name} is damaged: flow {records + 1} at byte {offset} is not a valid flow "
            f"record ({reason}); {_before(records, 'flow')}.")


def _index_har(path: Path, fo: BinaryIO, size: int) -> Capture:
    name = str(path)
    if size > MAX_HAR_BYTES:
        raise InputError(f"{name} starts like a HAR but is {_amount(size)}, over the "
                         f"{_amount(MAX_HAR_BYTES)} that the audit reads whole; export it "
                         "without response bodies, or capture with mitmproxy.")
    try:
        data = json.loads(fo.read(MAX_HAR_BYTES).decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{name} starts like JSON but is not UTF-8 text, so it is not a "
                         "HAR.") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON ({exc.msg}: line {exc.lineno} column "
                         f"{exc.colno}), so it is neither a HAR nor a mitmproxy flow file."
                         ) from None
    except (RecursionError, ValueError, MemoryError) as exc:
        raise InputError(f"{name} is JSON that can't be read ({_reason(exc)}), so it is not "
                         "a HAR.") from None
    log = data.get("log") if isinstance(data, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"{name} is JSON but not a HAR: it has no log.entries list.")
    capture = Capture(path, "har")
    for i, entry in enumerate(entries):
        try:
            # Converted here only to find a bad entry before auditing starts; the flow is
            # made again, one at a time, when it is audited.
            capture.starts.append(start_of(har.request_to_flow(entry)))
        except Exception as exc:  # noqa: BLE001 - any failure of mitmproxy's reader
            reason = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) else (
                str(exc) or type(exc).__name__)
            capture.damage = (f"{name}: HAR entry {i + 1} cannot be read ({reason}); "
                              f"{_before(i, 'entry', 'entries')}.")
            del entries[i:]
            break
    capture.entries = entries
    return capture
