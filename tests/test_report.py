"""`wxgate report`: a violation log as one self-contained HTML page and as JUnit XML that
CI systems read; bad logs give one sentence and exit 2."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from wxgate.cli import main as cli_main
from wxgate.policy.rules import RULES
from wxgate.report import EXPLANATIONS, explanation

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
    assert rows[0] == ["Time", "App", "API", "URL", "Rule", "Severity", "Action", "Detail",
                       "errMsg"]
    assert len(rows) == 1 + 7  # the config_loaded line is not a violation
    assert rows[1] == ["2026-11-24 12:00:00.123", APP_A, "request",
                       "GET https://evil.example.net/x", "domain.not_listed", "error",
                       "blocked", "evil.example.net is not listed",
                       "request:fail url not in domain list"]
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=&quot;2&quot;" in page
    assert 'data-sev="warning" data-rule="concurrency.exceeded"' in page


def test_html_explains_each_broken_rule_with_the_wechat_rule_and_the_fix(tmp_path: Path):
    page, _ = render(tmp_path)
    for rule in ("domain.not_listed", "concurrency.exceeded", "referer.rewritten"):
        assert f'id="rule-{rule}"' in page
        assert explanation(rule).fix.replace("'", "&#x27;") in page
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
    assert parse(page).tables["violations"][1][3] == f"GET {hostile}"
    root = ET.parse(junit).getroot()  # still well-formed XML: no NUL or ESC in it
    [failure] = root.iter("failure")
    assert "\x1b" not in (failure.text or "") and "\x00" not in (failure.get("message") or "")
    assert "<script>alert(1)</script>" in (failure.text or "")

