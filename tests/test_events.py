"""The event stream (addons/events.py): every string field cut at log.max_field_bytes before
the log, /violations and the console see it (SPEC §5); the in-memory violation list bounded
in entries and bytes, and paged; control characters escaped on a terminal and in JSON; the
pretty console's layout and its live status line (issue 18)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
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
    (held,), _, _ = events.RECENT.page(str(events.RECENT.seq - 1))
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
    assert [e["seq"] for e in recent.page(None)[0]] == [8, 9, 10, 11, 12]
    assert recent.first_seq == 8


def test_the_list_keeps_at_most_max_bytes_and_drops_the_oldest():
    recent = RecentViolations(max_bytes=64 * 1024)
    fill(recent, 100, detail="d" * 2048)
    assert 20 < len(recent) < 40
    assert recent.bytes <= 64 * 1024
    assert recent.page(None)[0][-1]["seq"] == 100


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


# --- the pretty console's layout (issue 18) -------------------------------------------------

def violation_event(**fields: Any) -> dict[str, Any]:
    event = {
        "timestamp": "2026-11-24T12:00:00.123Z", "event": "violation",
        "rule": "domain.not_listed", "severity": "error", "action": "blocked",
        "appid": "wx0123456789abcdef", "app_version": "0", "api": "request", "method": "GET",
        "url": "https://evil.example.net/x", "host": "evil.example.net", "port": 443,
        "client": "192.168.1.23", "flow_id": "f-1", "platform": "android",
        "detail": "evil.example.net is not in the request domain list (1 entry)"
                  "; a wx.request call",
        "errMsg": "request:fail url not in domain list", "errno": 600002,
    }
    event.update(fields)
    return event


def at_100(left: str, device: str) -> str:
    """A first line: the device ends at column 100, two spaces at least after the URL."""
    return f"{left:<{100 - len(device) - 2}}  {device}"


def test_a_violation_is_one_line_rule_and_outcome_first_with_the_errmsg_under_the_rule():
    assert events.pretty_lines(violation_event(), "warning", width=100) == [
        at_100("error   domain.not_listed    blocked  GET https://evil.example.net/x",
               "192.168.1.23 android"),
        "        request:fail url not in domain list",
    ]


def test_the_detail_follows_the_errmsg_where_it_adds_something():
    event = violation_event(
        rule="timeout.exceeded", url="https://api.example.com/report",
        errMsg="request:fail timeout",
        detail="no complete response within the request networkTimeout of 5000 ms")
    assert events.pretty_lines(event, "warning", width=100) == [
        at_100("error   timeout.exceeded     blocked  GET https://api.example.com/report",
               "192.168.1.23 android"),
        "        request:fail timeout — no complete response within the request "
        "networkTimeout of 5000 ms",
    ]


@pytest.mark.parametrize(("fields", "adds"), [
    ({}, False),  # host, list and interface are all on the line already
    ({"rule": "scheme.insecure", "detail": "request must use https://, this call uses http://"},
     False),
    ({"api": "uploadFile", "detail": "x is not in the uploadFile domain list (1 entry)"
                                     "; an uploadFile call (multipart body)"}, True),
    ({"rule": "domain.ip_address", "detail": "host is IP address 10.0.0.8 (allow_lan_ip is "
                                             "off)"}, True),
    ({"rule": "concurrency.exceeded", "detail": "11 calls in flight (limit 10)"}, True),
    ({"detail": ""}, False),
])
def test_the_detail_is_shown_only_where_it_adds_something(fields: dict[str, Any], adds: bool):
    assert events.detail_adds(violation_event(**fields)) is adds


def test_a_warning_without_errmsg_shows_only_its_detail_and_no_platform_when_unknown():
    event = violation_event(rule="concurrency.exceeded", severity="warning", action="queued",
                            errMsg=None, errno=None, client="127.0.0.1", platform=None,
                            detail="11 calls in flight for wx0123456789abcdef (limit 10); "
                                   "queued until a slot frees")
    assert events.pretty_lines(event, "warning", width=100) == [
        at_100("warning concurrency.exceeded queued   GET https://evil.example.net/x",
               "127.0.0.1"),
        "        11 calls in flight for wx0123456789abcdef (limit 10); queued until a slot "
        "frees",
    ]


def test_a_long_url_is_cut_in_the_middle_keeping_its_host_and_the_line_fits_100_columns():
    url = "https://api.example.com/v1/users/123456/orders?page=2&size=50&sort=desc"
    first = events.pretty_lines(violation_event(url=url), "warning", width=100)[0]
    assert len(first) == 100
    assert "GET https://api.example.com/…" in first and "sort=desc  192.168.1.23" in first


def test_a_wider_terminal_gives_the_url_the_room():
    url = "https://api.example.com/v1/users/123456/orders?page=2&size=50&sort=desc"
    first = events.pretty_lines(violation_event(url=url), "warning", width=160)[0]
    assert f"GET {url} " in first and first.endswith("192.168.1.23 android")


@pytest.mark.parametrize(("text", "width", "cut"), [
    ("https://a.example.com/x", 40, "https://a.example.com/x"),
    ("https://api.example.com/aaaaaaaaaaaaaaaaaaaa/end", 34, "https://api.example.com/…aaaaa/end"),
    ("abcdefghij", 5, "ab…ij"),
    ("中文中文中文中文", 9, "中文…中文"),  # wide characters count two columns
])
def test_cut_middle(text: str, width: int, cut: str):
    assert events.cut_middle(text, width) == cut
    assert events.columns(events.cut_middle(text, width)) <= width


def test_other_events_get_a_compact_line_with_their_fields_in_logged_order():
    lines = events.pretty_lines({"timestamp": "t", "event": "config_loaded",
                                 "file": "/home/qa/wxgate.yaml", "mode": "enforce",
                                 "apps": ["wx0123456789abcdef"]}, "info", width=100)
    assert lines == ["info    config_loaded        file=/home/qa/wxgate.yaml mode=enforce "
                     "apps=wx0123456789abcdef"]
    lines = events.pretty_lines({"timestamp": "t", "event": "refused", "client": "8.8.8.8",
                                 "reason": "client_not_allowed"}, "warning", width=100)
    assert lines == ["warning refused              client=8.8.8.8 reason=client_not_allowed"]


def test_a_rejected_config_lists_each_problem_on_its_own_line():
    lines = events.pretty_lines({"timestamp": "t", "event": "config_rejected",
                                 "file": "w.yaml", "kept": "old.yaml",
                                 "problems": ["w.yaml:3: apps[0].appid: bad", "w.yaml:9: x"]},
                                "error", width=100)
    assert lines == ["error   config_rejected      file=w.yaml kept=old.yaml",
                     "        w.yaml:3: apps[0].appid: bad", "        w.yaml:9: x"]


def test_a_long_field_list_wraps_under_the_fields():
    lines = events.pretty_lines({"timestamp": "t", "event": "shutdown", "flows": 12,
                                 "blocked": 3, "violations": {f"rule.number_{i}": i
                                                              for i in range(6)}},
                                "info", width=100)
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines)
    assert lines[1].startswith(" " * 29 + "rule.number_")


def test_severity_is_colored_only_when_asked_and_the_text_is_the_same():
    plain = events.pretty_lines(violation_event(), "warning", width=100)
    colored = events.pretty_lines(violation_event(), "warning", width=100, colors=True)
    assert "\x1b[1;31merror" in colored[0] and "\x1b[1;31mrequest:fail" in colored[1]
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in colored] == plain


@pytest.mark.parametrize(("env", "colors"), [({}, True), ({"NO_COLOR": "1"}, False),
                                             ({"TERM": "dumb"}, False)])
def test_colors_follow_no_color_and_term(monkeypatch: pytest.MonkeyPatch,
                                         env: dict[str, str], colors: bool):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert events._colors_wanted(Tty()) is colors


# --- the live status line -------------------------------------------------------------------

class Tty(io.StringIO):
    """A stream that says it is a terminal, and keeps what was written."""

    def isatty(self) -> bool:
        return True


def as_stderr(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> None:
    """In the test's body: pytest puts its own sys.stderr back after fixtures run."""
    monkeypatch.setattr(sys, "stderr", stream)


def run_in_loop(*steps: Any) -> None:
    """Each step in its own turn of an event loop, as mitmproxy runs hooks and tasks."""
    async def main() -> None:
        for step in steps:
            step()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    asyncio.run(main())


def test_the_status_line_is_cleared_before_a_logged_line_and_drawn_again_after(
        monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    console = Console()
    stream = events.TerminalStream(tty, console)
    run_in_loop(lambda: console.status("flows 1 | in flight 0"),
                lambda: stream.write("error   domain.not_listed ...\n"),
                lambda: console.status("flows 2 | in flight 0"))
    assert tty.getvalue() == ("\r\x1b[2Kflows 1 | in flight 0"
                              "\r\x1b[2Kerror   domain.not_listed ...\n"
                              "\r\x1b[2Kflows 1 | in flight 0"
                              "\r\x1b[2Kflows 2 | in flight 0")


def test_the_console_clears_the_status_line_before_rendering_an_event(
        monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    console = Console()
    rendered: list[str | bytes] = []
    run_in_loop(lambda: console.status("flows 1"),
                lambda: rendered.append(console(None, "warning", violation_event())))
    assert tty.getvalue() == "\r\x1b[2Kflows 1\r\x1b[2K\r\x1b[2Kflows 1"
    assert "domain.not_listed" in str(rendered[0])


def test_an_unchanged_status_is_not_drawn_again_and_clear_status_forgets_it(
        monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    console = Console()
    run_in_loop(lambda: console.status("flows 1"), lambda: console.status("flows 1"),
                console.clear_status, lambda: events.TerminalStream(tty, console).write("x\n"))
    assert tty.getvalue() == "\r\x1b[2Kflows 1\r\x1b[2Kx\n"


def test_the_status_line_waits_for_a_line_printed_in_two_writes_to_end(
        monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    console = Console()
    stream = events.TerminalStream(tty, console)
    run_in_loop(lambda: console.status("flows 1"), lambda: stream.write("half a line"),
                lambda: console.status("flows 2"), lambda: stream.write(" and the rest\n"))
    assert tty.getvalue() == ("\r\x1b[2Kflows 1\r\x1b[2Khalf a line and the rest\n"
                              "\r\x1b[2Kflows 2")


def test_writing_to_a_file_leaves_the_status_line_alone(monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    console = Console()
    file = io.StringIO()
    run_in_loop(lambda: console.status("flows 1"),
                lambda: events.TerminalStream(file, console).write("to a file\n"))
    assert tty.getvalue() == "\r\x1b[2Kflows 1" and file.getvalue() == "to a file\n"


def test_no_status_line_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch):
    piped = io.StringIO()
    as_stderr(monkeypatch, piped)
    run_in_loop(lambda: Console().status("flows 1"))
    assert piped.getvalue() == ""


def test_mitmproxys_log_lines_clear_the_status_line_first(monkeypatch: pytest.MonkeyPatch):
    tty = Tty()
    as_stderr(monkeypatch, tty)
    handler = logging.StreamHandler(tty)
    root = logging.getLogger()
    root.addHandler(handler)
    console = Console()
    try:
        run_in_loop(lambda: console.status("flows 1"),
                    lambda: logging.getLogger("mitmproxy.test").warning("a warning"))
    finally:
        root.removeHandler(handler)
    assert tty.getvalue() == "\r\x1b[2Kflows 1\r\x1b[2Ka warning\n\r\x1b[2Kflows 1"


def test_the_connection_chatter_filter_keeps_warnings_and_drops_info():
    logger = logging.getLogger(events.CONNECTION_LOGGER)
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    saved = list(logger.filters)
    try:
        events.mute_connection_log()
        events.mute_connection_log()  # once is enough
        assert len(logger.filters) == len(saved) + 1
        logger.info("client connect")
        logger.warning("Client TLS handshake failed.")
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = saved
    assert kept == ["Client TLS handshake failed."]


def test_a_huge_detail_takes_at_most_three_lines_on_the_console():
    event = violation_event(rule="referer.invalid", severity="warning", action="reported",
                            errMsg=None, detail=f"Referer {'r' * 2000!r} is not https://...")
    lines = events.pretty_lines(event, "warning", width=100)
    assert len(lines) <= 1 + 3 and all(len(line) <= 100 for line in lines)
    assert lines[1].startswith("        Referer 'rrrr") and "…" in "".join(lines)
