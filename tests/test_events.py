"""The event stream (addons/events.py): every string field cut at log.max_field_bytes before
the log, /violations and the console see it (SPEC §5); the in-memory violation list bounded
in entries and bytes, and paged; control characters escaped on a terminal and in JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from wxgate import events
from wxgate.events import Console, FieldCut, RecentViolations, cut_text, json_line

MB = "a" * 1_048_576


@pytest.fixture
def field_limit() -> Iterator[None]:
    saved = events.CUT.max_bytes
    yield
    events.CUT.max_bytes = saved


def cut(event: dict[str, Any], limit: int = 2048) -> dict[str, Any]:
    result: dict[str, Any] = FieldCut(limit)(None, "warning", event)
    return result


# --- cutting fields -------------------------------------------------------------------------

def test_a_long_field_is_cut_to_max_field_bytes_and_notes_its_length():
    url = "https://evil.example.net/" + MB
    value = cut({"url": url})["url"]
    assert len(value.encode()) <= 2048
    assert value.startswith("https://evil.example.net/aaaa")
    assert value.endswith(f"…[cut: {len(url)} bytes]")


def test_a_value_that_fits_is_kept_exactly():
    value = "é" * 1024  # 2048 bytes of UTF-8
    assert cut({"detail": value})["detail"] == value


@pytest.mark.parametrize("char", ["é", "中", "😀"])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_a_cut_never_splits_a_character(char: str, offset: int):
    value = "x" * offset + char * 2000
    result = cut_text(value, 100)
    assert len(result.encode()) <= 100
    kept = result.split("…[cut: ")[0]
    assert kept == value[:len(kept)]  # a clean prefix: whole characters only
    assert result.endswith(f"…[cut: {len(value.encode())} bytes]")


def test_every_string_is_cut_nested_ones_and_keys_too():
    event = cut({"event": "config_rejected", "problems": [MB, {MB: MB}], "count": 3,
                 "ok": True, "none": None, "port": 443.5}, limit=64)
    assert event["count"] == 3 and event["ok"] is True and event["none"] is None
    assert event["port"] == 443.5
    first, nested = event["problems"]
    assert len(first.encode()) <= 64
    [(key, value)] = nested.items()
    assert len(key.encode()) <= 64 and len(value.encode()) <= 64


def test_an_object_is_cut_as_the_text_the_log_writes_for_it():
    class Big:
        def __str__(self) -> str:
            return MB

    assert len(cut({"error": Big()}, limit=64)["error"].encode()) <= 64


def test_bytes_that_are_not_utf8_become_replacement_characters_and_the_line_is_written(
        tmp_path: Path):
    """mitmproxy decodes a URL path with surrogateescape; such a URL used to make the
    sink's UTF-8 write raise, losing the violation line."""
    url = "http://evil.example.net/\udcff\udcfe"
    event = cut({"event": "violation", "url": url})
    assert event["url"] == "http://evil.example.net/\ufffd\ufffd"
    sink = events.JsonlSink()
    sink.open(tmp_path / "log.jsonl")
    sink(None, "warning", event)
    sink.close()
    assert json.loads((tmp_path / "log.jsonl").read_text())["url"] == event["url"]


def test_the_cut_runs_before_the_recent_list_the_log_and_the_console():
    events.configure("off")
    processors = structlog.get_config()["processors"]
    order = [type(p) for p in processors]
    assert order.index(FieldCut) < order.index(RecentViolations)
    assert order.index(FieldCut) < order.index(events.JsonlSink)
    assert order.index(FieldCut) < order.index(Console)


def test_a_logged_violation_is_cut_in_the_log_and_in_the_recent_list(
        tmp_path: Path, field_limit: None):
    events.configure("off", max_field_bytes=256)
    events.SINK.open(tmp_path / "log.jsonl")
    try:
        events.logger().warning("violation", rule="referer.invalid", url="https://x/" + MB,
                                detail=f"Referer {MB!r} is not ...", referer=MB)
    finally:
        events.SINK.close()
    [line] = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(line) < 4 * 256
    logged = json.loads(line)
    for key in ("url", "detail", "referer"):
        assert len(logged[key].encode()) <= 256, key
        assert "…[cut: " in logged[key]
    held = events.RECENT.since(str(events.RECENT.seq - 1))[-1]
    assert held["url"] == logged["url"] and held["detail"] == logged["detail"]


def test_configure_sets_the_limit_and_a_later_call_without_it_keeps_it(field_limit: None):
    events.configure("off", max_field_bytes=100)
    assert events.CUT.max_bytes == 100
    events.configure("off")
    assert events.CUT.max_bytes == 100


# --- the console and JSON -------------------------------------------------------------------

HOSTILE = {
    "ESC (title change)": "\x1b]0;pwned\x07",
    "ESC (screen clear)": "\x1b[2J",
    "BEL": "\x07",
    "CR": "\rforged",
    "backspace": "ab\x08",
    "NUL": "\x00",
    "DEL": "\x7f",
    "C1 CSI": "\x9b2J",
    "C1 OSC": "\x9d0;pwned\x9c",
    "newline": "\nforged line",
    "bidi override": "\u202egnp.exe",
    "line separator": "\u2028",
}
RAW = "\x00\x07\x08\r\n\x1b\x7f\x9b\x9c\x9d\u2028\u202e"


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_pretty_console_escapes_control_characters(text: str):
    rendered = Console().pretty(None, "warning", {
        "timestamp": "t", "event": "violation", "url": f"http://evil.example.net/{text}"})
    # Colors are off here (no TTY), so the line holds no control character at all.
    assert not any(c in rendered for c in RAW)
    assert events.terminal_safe(text) in rendered


def test_terminal_safe_writes_escapes_a_reader_recognises():
    assert events.terminal_safe("a\x1b[2Jb\x07\x9b\u202e") == "a\\x1b[2Jb\\x07\\x9b\\u202e"
    assert events.terminal_safe("plain ascii and 中文") == "plain ascii and 中文"


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_json_output_escapes_control_characters_and_decodes_to_the_same_value(text: str):
    event = {"event": "violation", "url": f"http://evil.example.net/{text}", "n": "中文"}
    line = json_line(event)
    assert not any(c in line for c in RAW)
    assert "中文" in line  # other non-ASCII text stays readable
    assert json.loads(line) == event


def test_the_json_console_prints_the_same_escaped_line():
    console = Console()
    console.mode = "json"
    event = {"event": "violation", "url": "http://x/\x1b]0;t\x07\x9b"}
    assert console(None, "warning", dict(event)) == json_line(event)


# --- the recent violations behind /violations ----------------------------------------------

def fill(recent: RecentViolations, count: int, **fields: Any) -> None:
    for i in range(count):
        recent(None, "warning", {"timestamp": f"2026-11-24T12:00:{i:02d}.000Z",
                                 "event": "violation", "rule": "domain.not_listed",
                                 "n": i, **fields})


def test_only_violations_are_held():
    recent = RecentViolations()
    recent(None, "info", {"event": "config_loaded"})
    fill(recent, 1)
    assert len(recent) == 1 and recent.seq == 1


def test_the_list_keeps_at_most_max_entries_and_drops_the_oldest():
    recent = RecentViolations(max_entries=5)
    fill(recent, 12)
    assert len(recent) == 5
    assert [e["seq"] for e in recent.since(None)] == [8, 9, 10, 11, 12]
    assert recent.first_seq == 8


def test_the_list_keeps_at_most_max_bytes_and_drops_the_oldest():
    recent = RecentViolations(max_bytes=64 * 1024)
    fill(recent, 100, detail="d" * 2048)
    assert 20 < len(recent) < 40
    assert recent.bytes <= 64 * 1024
    assert recent.since(None)[-1]["seq"] == 100


def test_a_page_holds_at_most_limit_and_says_there_is_more():
    recent = RecentViolations()
    fill(recent, 12)
    items, last, more = recent.page(None, limit=5)
    assert ([e["seq"] for e in items], last, more) == ([1, 2, 3, 4, 5], 5, True)


def test_paging_from_last_visits_every_held_violation_once():
    recent = RecentViolations(max_entries=50)
    fill(recent, 60)
    seen: list[int] = []
    since: str | None = None
    while True:
        items, last, more = recent.page(since, limit=7)
        seen += [e["seq"] for e in items]
        since = str(last)
        if not more:
            break
    assert seen == list(range(11, 61))
    assert recent.page(since) == ([], 60, False)
    fill(recent, 1)
    assert [e["seq"] for e in recent.page(since)[0]] == [61]


def test_a_page_since_a_sequence_number_older_than_the_list_starts_at_the_oldest_held():
    recent = RecentViolations(max_entries=3)
    fill(recent, 10)
    assert [e["seq"] for e in recent.page("2")[0]] == [8, 9, 10]
    assert recent.page("99") == ([], 10, False)


def test_a_page_since_a_timestamp_holds_those_at_or_after_it():
    recent = RecentViolations()
    fill(recent, 10)
    items, last, more = recent.page("2026-11-24T12:00:07.000Z")
    assert ([e["n"] for e in items], last, more) == ([7, 8, 9], 10, False)


def test_a_page_stops_at_its_byte_budget_but_always_holds_one():
    recent = RecentViolations()
    fill(recent, 10, detail="d" * 2048)
    each = recent.bytes // len(recent)
    items, last, more = recent.page(None, max_bytes=int(2.5 * each))
    assert (len(items), last, more) == (2, 2, True)
    items, _, more = recent.page(None, max_bytes=10)
    assert (len(items), more) == (1, True)


def test_a_page_refuses_a_limit_below_one():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        RecentViolations().page(None, limit=0)


def test_since_still_returns_every_held_violation_after_it():
    recent = RecentViolations()
    fill(recent, 700)
    assert len(recent.since(None)) == 700
    assert [e["seq"] for e in recent.since("698")] == [699, 700]
