"""`wxgate report`: a violation log as one self-contained HTML page and as JUnit XML that
CI systems read; bad logs give one sentence and exit 2. The page shows what the developer
acts on (issue 18): the hosts to add per interface and those no entry fixes, violations over
time as inline SVG, and the device of every violation."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from wxgate.cli import main as cli_main
from wxgate.policy.rules import RULES
from wxgate.report import (
    EXPLANATIONS,
    HostsToAdd,
    ReportContext,
    Timeline,
    explanation,
    summarize,
    write_html,
)

APP_A = "wx0123456789abcdef"
APP_B = "wxfedcba9876543210"


def violation(rule: str, severity: str, appid: str | None = APP_A, **fields: Any
              ) -> dict[str, Any]:
    base = {
        "timestamp": "2026-11-24T12:00:00.123Z", "event": "violation", "rule": rule,
        "severity": severity, "action": "blocked" if severity == "error" else "reported",
        "appid": appid, "app_version": "0", "api": "request", "method": "GET",
        "url": "https://evil.example.net/x", "host": "evil.example.net", "port": 443,
        "client": "192.168.1.23", "flow_id": "f-1", "detail": "evil.example.net is not listed",
        "errMsg": "request:fail url not in domain list", "errno": 600002, "platform": "android",
    }
    base.update(fields)
    return base


SAMPLE = [
    {"timestamp": "2026-11-24T11:59:59.000Z", "event": "config_loaded", "file": "w.yaml"},
    violation("domain.not_listed", "error"),
    violation("domain.not_listed", "error", url="https://evil.example.net/<script>alert(1)"
              "</script>?a=1&b=\"2\"", detail="bad\x07byte & <tag>"),
    violation("domain.not_listed", "error", APP_B),
    violation("concurrency.exceeded", "warning", action="queued"),
    violation("referer.rewritten", "info", errMsg=None, errno=None),
    violation("referer.rewritten", "info", APP_B, errMsg=None, errno=None),
    violation("referer.appid_mismatch", "error", appid=None),
]


def write_log(path: Path, events: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)
    return path


class Page(HTMLParser):
    """The parts of the page a test looks at: tags, attributes, table cells by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def render(tmp_path: Path, events: list[dict[str, Any]] = SAMPLE) -> tuple[str, Path]:
    log = write_log(tmp_path / "violations.jsonl", events)
    out, junit = tmp_path / "report.html", tmp_path / "report.xml"
    assert cli_main(["report", str(log), "--html", str(out), "--junit", str(junit)]) == 0
    return out.read_text(), junit


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def test_html_is_one_self_contained_file(tmp_path: Path):
    page, _ = render(tmp_path)
    parser = parse(page)
    names = {tag for tag, _ in parser.tags}
    assert "link" not in names and "iframe" not in names and "img" not in names
    for tag, attrs in parser.tags:
        assert "src" not in attrs, tag  # inline script and style only
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#"), attrs
    assert "@import" not in page and "url(" not in page
    assert "<style>" in page and "<script>" in page


def test_html_summary_counts_by_rule_severity_and_app(tmp_path: Path):
    parser = parse(render(tmp_path)[0])
    by_rule = {row[0].replace(" (show)", ""): (row[1], row[2])
               for row in parser.tables["by-rule"][1:]}
    assert by_rule == {
        "domain.not_listed": ("error", "3"), "referer.appid_mismatch": ("error", "1"),
        "concurrency.exceeded": ("warning", "1"), "referer.rewritten": ("info", "2"),
    }
    by_app = {row[0]: row[1:] for row in parser.tables["by-app"][1:]}
    assert by_app == {APP_A: ["2", "1", "1", "4"], APP_B: ["1", "0", "1", "2"],
                      "(no app)": ["1", "0", "0", "1"]}


def test_html_violations_table_has_every_column_escaped(tmp_path: Path):
    page, _ = render(tmp_path)
    rows = parse(page).tables["violations"]
    assert rows[0] == ["Time", "App", "Device", "API", "URL", "Rule", "Severity", "Action",
                       "Detail", "errMsg"]
    assert len(rows) == 1 + 7  # the config_loaded line is not a violation
    assert rows[1] == ["2026-11-24 12:00:00.123", APP_A, "192.168.1.23 android", "request",
                       "GET https://evil.example.net/x", "domain.not_listed", "error",
                       "blocked", "evil.example.net is not listed",
                       "request:fail url not in domain list"]
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=&#34;2&#34;" in page
    assert 'data-sev="warning" data-rule="concurrency.exceeded"' in page
    assert 'data-device="192.168.1.23"' in page


def test_html_explains_each_broken_rule_with_the_wechat_rule_and_the_fix(tmp_path: Path):
    page, _ = render(tmp_path)
    for rule in ("domain.not_listed", "concurrency.exceeded", "referer.rewritten"):
        assert f'id="rule-{rule}"' in page
        assert explanation(rule).fix.replace("'", "&#39;") in page
    assert 'id="rule-tls.expired"' not in page  # only the rules that were broken


def test_every_rule_id_has_an_english_explanation():
    assert set(RULES) <= set(EXPLANATIONS)
    for rule, text in EXPLANATIONS.items():
        assert text.wechat.endswith(".") and text.fix.endswith("."), rule
    assert explanation("future.rule").fix  # a rule added later still renders


def test_junit_has_a_testcase_per_rule_and_app_and_a_failure_per_violation(tmp_path: Path):
    _, junit = render(tmp_path)
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = {(case.get("classname"), case.get("name")): case for case in root.iter("testcase")}
    # One testcase per (rule, app) that has violations; an info rule passes.
    assert set(cases) == {
        (f"wxgate.{app}", rule) for app in (APP_A, APP_B, "(no app)") for rule in (
            "domain.not_listed", "concurrency.exceeded", "referer.rewritten",
            "referer.appid_mismatch")}
    failures = cases[(f"wxgate.{APP_A}", "domain.not_listed")].findall("failure")
    assert [f.get("message", "")[:6] for f in failures] == ["[1/2] ", "[2/2] "]
    assert failures[1].get("message") == "[2/2] error: bad\ufffdbyte & <tag>"
    assert "<script>alert(1)</script>?a=1&b=\"2\"" in (failures[1].text or "")
    assert f"fix: {explanation('domain.not_listed').fix}" in (failures[1].text or "")
    assert cases[(f"wxgate.{APP_A}", "concurrency.exceeded")].find("failure") is not None
    info = cases[(f"wxgate.{APP_A}", "referer.rewritten")]
    assert info.find("failure") is None and "evil.example.net" in (
        info.findtext("system-out") or "")
    assert cases[(f"wxgate.{APP_B}", "concurrency.exceeded")].find("failure") is None
    assert root.get("failures") == "4" and root.get("tests") == str(len(cases))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites[f"wxgate.{APP_A}"].get("failures") == "2"


def test_report_of_an_empty_log_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    page, junit = render(tmp_path, [])
    assert "No violations" in page
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0"
    assert "0 violations" in capsys.readouterr().out


def test_a_line_cut_short_at_the_end_is_skipped_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    log = write_log(tmp_path / "cut.jsonl", SAMPLE[:2], tail='{"timestamp": "2026-11')
    assert cli_main(["report", str(log), "--html", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert err == f"wxgate report: {log} line 3 is cut short (the proxy stopped while " \
                  "writing it) and was skipped.\n"


@pytest.mark.parametrize(("content", "sentence"), [
    ("not json\n", "line 1 is not a JSON object (Expecting value), so the file is not a "
                   "wxgate violation log."),
    ('{"a": 1}\n', 'line 1 has no "event" field, so the file is not a wxgate violation log.'),
    ('{"event": "violation"}\n', 'line 1 is a violation without a "rule" field.'),
])
def test_a_bad_log_gives_one_sentence_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, sentence: str):
    log = tmp_path / "bad.jsonl"
    log.write_text(content)
    assert cli_main(["report", str(log), "--html", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == f"wxgate report: {log} {sentence}\n"


def test_a_missing_log_or_unwritable_output_gives_one_sentence_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli_main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == f"wxgate report: {tmp_path / 'nope.jsonl'} does not " \
                                      "exist.\n"
    log = write_log(tmp_path / "ok.jsonl", SAMPLE)
    out = tmp_path / "no-such-dir" / "r.html"
    assert cli_main(["report", str(log), "--html", str(out)]) == 2
    assert re.fullmatch(rf"wxgate report: {re.escape(str(out))} cannot be written \(.+\)\.\n",
                        capsys.readouterr().err)


def test_without_outputs_the_summary_is_printed(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]):
    log = write_log(tmp_path / "ok.jsonl", SAMPLE)
    assert cli_main(["report", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "7 violations: 4 error, 1 warning, 2 info"
    assert "domain.not_listed" in out


def test_the_terminal_summary_escapes_control_characters_from_the_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A log is partly written by clients: its text must not drive the terminal."""
    log = write_log(tmp_path / "v.jsonl", [
        violation("x\x1b]0;pwned\x07", "error", appid="wx\x1b[2J\x9b")])
    assert cli_main(["report", str(log)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "x\\x1b]0;pwned\\x07" in out and "wx\\x1b[2J\\x9b" in out


def test_html_and_junit_carry_control_characters_and_markup_from_the_log_inertly(
        tmp_path: Path):
    hostile = 'https://x/"><script>alert(1)</script>\x1b[2J\x00\x9b'
    page, junit = render(tmp_path, [violation("domain.not_listed", "error", url=hostile,
                                              detail=hostile)])
    assert "<script>alert(1)" not in page
    assert parse(page).tables["violations"][1][4] == f"GET {hostile}"
    root = ET.parse(junit).getroot()  # still well-formed XML: no NUL or ESC in it
    [failure] = root.iter("failure")
    assert "\x1b" not in (failure.text or "") and "\x00" not in (failure.get("message") or "")
    assert "<script>alert(1)</script>" in (failure.text or "")



# --- what the developer acts on (issue 18) --------------------------------------------------

def call(rule: str, url: str, api: str = "request", **fields: Any) -> dict[str, Any]:
    """A violation of a call to `url`, with host and port as the proxy logs them."""
    scheme, rest = url.split("://", 1)
    authority = rest.split("/", 1)[0]
    host, _, port = authority.rpartition(":") if authority.count(":") == 1 else (
        authority, "", "")
    default = 443 if scheme in ("https", "wss") else 80
    return violation(rule, "error", url=url, host=host, port=int(port) if port else default,
                     api=api, **fields)


@pytest.mark.parametrize(("event", "found"), [
    (call("domain.not_listed", "https://evil.example.net/x"),
     ("add", "request", "https://evil.example.net")),
    (call("domain.not_listed", "https://Evil.Example.net:8443/x"),
     ("add", "request", "https://evil.example.net:8443")),
    (call("domain.port_mismatch", "https://upload.example.com:8443/up", "uploadFile"),
     ("add", "uploadFile", "https://upload.example.com:8443")),
    (call("domain.not_listed", "wss://push.example.net/ws", "connectSocket"),
     ("add", "connectSocket", "wss://push.example.net")),
    (call("webview.not_listed", "https://h5.example.org/promo", "webview"),
     ("add", "webview", "https://h5.example.org")),
    (call("domain.redirect_not_listed", "https://api.example.com/go", "downloadFile",
          location="https://files.example.org/a.zip", hop_rule="domain.not_listed"),
     ("add", "downloadFile", "https://files.example.org")),
    (call("scheme.insecure", "http://api.example.com/login"),
     ("never", "scheme.insecure", "http://api.example.com")),
    (call("domain.ip_address", "https://10.0.0.8/debug"),
     ("never", "domain.ip_address", "https://10.0.0.8")),
    (call("domain.localhost", "https://localhost:3000/mock"),
     ("never", "domain.localhost", "https://localhost:3000")),
    (call("domain.forbidden", "https://api.weixin.qq.com/cgi-bin/token"),
     ("never", "domain.forbidden", "https://api.weixin.qq.com")),
    (call("domain.not_listed", "https://evil.example.net./x"),
     ("never", "trailing_dot", "https://evil.example.net.")),
    (call("webview.not_listed", "http://h5.example.org/", "webview"),
     ("never", "webview.not_https", "http://h5.example.org")),
    (call("webview.not_listed", "https://192.168.1.10/", "webview"),
     ("never", "domain.ip_address", "https://192.168.1.10")),
    (call("domain.redirect_not_listed", "https://api.example.com/go",
          location="http://api.example.com/plain", hop_rule="scheme.insecure"),
     ("never", "scheme.insecure", "http://api.example.com")),
    (call("timeout.exceeded", "https://api.example.com/slow"), None),
    (violation("concurrency.exceeded", "warning"), None),
], ids=lambda v: v[2] if isinstance(v, tuple) else None)
def test_hosts_to_add_name_the_console_entry_or_why_none_fixes_it(
        event: dict[str, Any], found: tuple[str, str, str] | None):
    assert HostsToAdd.classify(event) == found


HOSTS_LOG = [
    *[call("domain.not_listed", f"https://evil.example.net/{i}") for i in range(3)],
    call("domain.not_listed", "https://track.example.net/t"),
    call("domain.port_mismatch", "https://upload.example.com:8443/up", "uploadFile"),
    call("scheme.insecure", "http://api.example.com/login"),
    call("domain.forbidden", "https://api.weixin.qq.com/cgi-bin/token"),
]


def test_the_page_lists_hosts_to_add_per_interface_with_calls_and_what_to_paste(
        tmp_path: Path):
    page, _ = render(tmp_path, HOSTS_LOG)
    parser = parse(page)
    add = [attrs for tag, attrs in parser.tags if tag == "table" and
           "add" in (attrs.get("class") or "")]
    assert [(a["data-app"], a["data-api"]) for a in add] == [(APP_A, "request"),
                                                              (APP_A, "uploadFile")]
    assert parser.tables[f"add-{APP_A}-request"][1:] == [
        ["https://evil.example.net", "3", "https://evil.example.net/0"],
        ["https://track.example.net", "1", "https://track.example.net/t"]]
    assert parser.tables[f"add-{APP_A}-uploadFile"][1:] == [
        ["https://upload.example.com:8443", "1", "https://upload.example.com:8443/up"]]
    assert '<pre class="paste">https://evil.example.net;https://track.example.net</pre>' in page
    never = {row[0]: row[1:] for row in parser.tables["never-listed"][1:]}
    assert set(never) == {"http://api.example.com", "https://api.weixin.qq.com"}
    assert never["http://api.example.com"][1:3] == ["1", APP_A]
    assert "https:// (wss:// for sockets) only" in never["http://api.example.com"][0]


def test_the_page_says_when_there_is_nothing_to_add(tmp_path: Path):
    page, _ = render(tmp_path, [violation("concurrency.exceeded", "warning")])
    assert "Nothing to add" in page and 'id="never-listed"' not in page


def test_hosts_and_timeline_come_before_the_violations_table(tmp_path: Path):
    page, _ = render(tmp_path)
    order = [page.index(f'id="{name}"') for name in ("summary", "hosts", "timeline",
                                                      "violations")]
    assert order == sorted(order)


def test_the_time_chart_is_inline_svg_with_a_row_per_rule_and_a_tooltip_per_bar(
        tmp_path: Path):
    log = [violation("domain.not_listed", "error", timestamp=f"2026-11-24T12:{m:02d}:00.000Z")
           for m in range(0, 30)]
    log += [violation("concurrency.exceeded", "warning",
                      timestamp=f"2026-11-24T12:10:{s:02d}.000Z") for s in range(12)]
    page, _ = render(tmp_path, log)
    svg = page[page.index("<svg"):page.index("</svg>") + 6]
    root = ET.fromstring(svg)  # well-formed, and readable without the page's script
    ns = "{http://www.w3.org/2000/svg}"
    lanes = [g for g in root.iter(f"{ns}g")]
    assert [g.get("class") for g in lanes] == ["error", "warning"]
    labels = [g.find(f"{ns}text").text for g in lanes]  # type: ignore[union-attr]
    assert labels == ["domain.not_listed (30)", "concurrency.exceeded (12)"]
    bars = list(lanes[0].iter(f"{ns}rect"))
    assert 10 <= len(bars) <= 60
    assert sum(int(b.findtext(f"{ns}title", "").split(": ")[1].split()[0]) for b in bars) == 30
    assert "One bar is" in page and "href" not in svg


def test_a_log_without_timestamps_has_no_chart_and_still_renders(tmp_path: Path):
    page, _ = render(tmp_path, [violation("domain.not_listed", "error", timestamp=None)])
    assert "No violation with a time to chart." in page


def test_the_timeline_stays_bounded_and_keeps_every_count():
    timeline = Timeline()
    for second in range(100_000):
        stamp = datetime.fromtimestamp(1_790_000_000 + second * 7, UTC).isoformat()
        timeline.add(stamp, "domain.not_listed")
    assert len(timeline.buckets) <= Timeline.MAX_BUCKETS
    assert sum(c["domain.not_listed"] for c in timeline.buckets.values()) == 100_000
    start, step, bins = timeline.binned(60)
    assert len(bins) <= 60 and sum(b["domain.not_listed"] for b in bins) == 100_000
    assert step % timeline.step_s == 0 and start % step == 0


def test_the_device_column_and_filter_list_every_device(tmp_path: Path):
    log = [violation("domain.not_listed", "error", client="192.168.1.40", platform="ios"),
           violation("domain.not_listed", "error"), violation("referer.rewritten", "info",
                                                              client=None, platform=None)]
    page, _ = render(tmp_path, log)
    parser = parse(page)
    devices = {row[0]: row[1:] for row in parser.tables["by-device"][1:]}
    assert devices == {"192.168.1.40": ["ios", "1", "0", "0", "1"],
                       "192.168.1.23": ["android", "1", "0", "0", "1"],
                       "(unknown)": ["", "0", "0", "1", "1"]}
    options = [attrs.get("value") for tag, attrs in parser.tags if tag == "option"]
    assert {"192.168.1.40", "192.168.1.23", "(unknown)"} <= set(options)
    assert [row[2] for row in parser.tables["violations"][1:]] == [
        "192.168.1.40 ios", "192.168.1.23 android", "(unknown)"]


def test_the_table_is_written_while_the_log_is_still_being_read(tmp_path: Path):
    """Flat memory: the rows stream from the source to the file, none is held back."""
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(5000):
            pulled += 1
            yield violation("domain.not_listed", "error", url=f"https://evil.example.net/{i}")

    class Out(io.StringIO):
        first_row_at: int | None = None

        def write(self, text: str) -> int:
            if self.first_row_at is None and "<tr data-sev=" in text:
                self.first_row_at = pulled
            return super().write(text)

    summary = summarize(source)
    pulled = 0
    out = Out()
    write_html(out, source, summary, ReportContext())
    assert out.first_row_at is not None and out.first_row_at < 100
    assert out.getvalue().count("<tr data-sev=") == 5000


def test_timestamps_at_the_ends_of_the_calendar_or_not_times_still_render(tmp_path: Path):
    page, _ = render(tmp_path, [
        violation("domain.not_listed", "error", timestamp="0001-01-01T00:00:00Z"),
        violation("domain.not_listed", "error", timestamp="9999-12-31T23:59:59Z"),
        violation("domain.not_listed", "error", timestamp="2026-13-45"),
        violation("domain.not_listed", "error", timestamp=12)])
    assert "<svg" in page and "(out of range)" in page
