"""The HTML report in a real browser (headless Chromium): it renders offline, its summary
is on the page, and its client-side filter works without a server."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from addons.cli import main as cli_main

from ..test_report import SAMPLE, write_log

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
