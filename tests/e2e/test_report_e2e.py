"""The HTML report in a real browser (headless Chromium): it renders offline, its summary
is on the page, and its client-side filter works without a server. And the real command on
hostile files: one sentence, exit 2, bounded time and memory (SPEC §8)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from wxgate.cli import main as cli_main

from ..test_report import SAMPLE, violation, write_log
from .harness import wxgate_cmd

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="headless Chromium is not installed")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    out = tmp_path / "report.html"
    log = write_log(tmp_path / "v.jsonl", SAMPLE)
    assert cli_main(["report", str(log), "--html", str(out)]) == 0
    return out


@needs_chromium
def test_the_report_renders_to_a_screenshot(tmp_path: Path, report: Path):
    png = tmp_path / "report.png"
    done = chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={png}",
                    report.as_uri())
    assert png.exists(), done.stderr
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 1600)


@needs_chromium
def test_the_summary_renders_and_a_filter_in_the_link_hides_other_rows(tmp_path: Path,
                                                                      report: Path):
    done = chromium(tmp_path, "--dump-dom", report.as_uri() + "#rule=referer.rewritten")
    dom = done.stdout
    assert 'id="summary"' in dom and 'id="by-rule"' in dom
    rows = re.findall(r'<tr data-sev="[^"]*" data-rule="([^"]*)"[^>]*?(style="[^"]*")?>', dom)
    assert len(rows) == 7
    visible = [rule for rule, style in rows if "display: none" not in style]
    assert visible == ["referer.rewritten", "referer.rewritten"]
    assert re.search(r'<span id="shown">2</span>', dom)


# --- hostile files ----------------------------------------------------------------------------

MEMORY_LIMIT = 1 << 30  # address space of the command: reading until MemoryError fails fast


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real `wxgate` command with 1 GiB of address space and a deadline."""
    return subprocess.run([*wxgate_cmd(), *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)


def symlink_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def huge_line(path: Path) -> None:
    with path.open("wb") as fo:
        fo.write(b'{"event": "violation", "url": "')
        chunk = b"a" * (1 << 20)
        for _ in range(64):
            fo.write(chunk)  # 64 MiB, no newline


GOOD_LINE = json.dumps(violation("domain.not_listed", "error")) + "\n"
HOSTILE_LOGS: dict[str, tuple[Callable[[Path], object], str]] = {
    "200k-deep nesting": (
        lambda p: p.write_text("[" * 200_000 + "\n"),
        "line 1 nests arrays or objects too deeply to read, so the file is not a wxgate "
        "violation log."),
    "deep nesting inside a field, after a good line": (
        lambda p: p.write_text(GOOD_LINE + '{"event": "violation", "url": '
                               + "[" * 200_000 + "\n"),
        "line 2 nests arrays or objects too deeply to read, so the file is not a wxgate "
        "violation log."),
    "5,000-digit number": (
        lambda p: p.write_text('{"event": "violation", "rule": "x", "errno": ' + "7" * 5000
                               + "}\n"),
        "line 1 holds a number of more than 4300 digits, so the file is not a wxgate "
        "violation log."),
    "64 MiB line without newline": (
        huge_line, "line 1 is longer than 8 MiB, so the file is not a wxgate violation log."),
    "symlink to /dev/zero": (
        symlink_to_dev_zero, "is a character device (/dev/zero), not a violation log."),
    "FIFO": (os.mkfifo, "is a named pipe (FIFO), not a violation log."),
    "directory": (os.mkdir, "is a directory, not a violation log."),
}


@pytest.mark.parametrize(("make", "sentence"), HOSTILE_LOGS.values(), ids=HOSTILE_LOGS.keys())
def test_report_on_a_hostile_file_exits_2_with_one_sentence_in_bounded_memory(
        tmp_path: Path, make: Callable[[Path], object], sentence: str):
    log = tmp_path / "hostile.jsonl"
    make(log)
    done = run_bounded("report", str(log), "--html", str(tmp_path / "r.html"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr == f"wxgate report: {log} {sentence}\n"
    assert done.stdout == ""


def test_a_nested_field_that_parses_is_shown_as_its_json_text(tmp_path: Path):
    """Nested a few hundred deep: readable by json, shown as text without recursing."""
    deep = "[" * 500 + "]" * 500
    log = tmp_path / "nested.jsonl"
    log.write_text('{"event": "violation", "rule": "domain.not_listed", "url": ' + deep
                   + "}\n")
    done = run_bounded("report", str(log), "--html", str(tmp_path / "r.html"),
                       "--junit", str(tmp_path / "r.xml"))
    assert done.returncode == 0, done.stderr
    assert deep in (tmp_path / "r.html").read_text()


@needs_chromium
def test_a_device_in_the_link_shows_only_that_devices_rows(tmp_path: Path):
    out = tmp_path / "devices.html"
    log = write_log(tmp_path / "d.jsonl", [
        violation("domain.not_listed", "error", client="192.168.1.40", platform="ios"),
        *SAMPLE[1:4]])
    assert cli_main(["report", str(log), "--html", str(out)]) == 0
    dom = chromium(tmp_path, "--dump-dom", out.as_uri() + "#device=192.168.1.40").stdout
    rows = re.findall(r'<tr data-sev="[^"]*" data-rule="[^"]*" data-app="[^"]*" '
                      r'data-device="([^"]*)"[^>]*?(style="[^"]*")?>', dom)
    assert len(rows) == 4
    assert [device for device, style in rows if "display: none" not in style] == [
        "192.168.1.40"]


@needs_chromium
def test_the_page_reads_without_javascript(tmp_path: Path):
    """The chart is SVG and the table plain HTML: with the script taken out, both render
    (the script only filters)."""
    out = tmp_path / "chart.html"
    log = write_log(tmp_path / "c.jsonl", [
        violation("domain.not_listed", "error", timestamp=f"2026-11-24T12:{m:02d}:00.000Z")
        for m in range(20)])
    assert cli_main(["report", str(log), "--html", str(out)]) == 0
    page = out.read_text()
    bare = tmp_path / "no-script.html"
    bare.write_text(page[:page.index("<script>")] + page[page.index("</script>") + 9:])
    assert "<script" not in bare.read_text()
    dom = chromium(tmp_path, "--dump-dom", bare.as_uri()).stdout
    assert dom.count("<rect ") == 20 and "domain.not_listed (20)" in dom
    assert dom.count('<tr data-sev="error"') == 20
