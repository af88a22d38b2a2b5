"""`audit`, `report` and `check-config` judge media and web-view loads as the live proxy
does (issue 19): over a captured session with each engine's header sets, media and a
web-view page's calls to hosts on no list are judged by the certificate rules only, the
same host by wx.request is domain.not_listed, a navigation off business_domains is
webview.not_listed; the report renders what audit found; check-config applies the
console's rules to business_domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from wxgate.cli import main as cli_main

from .audit_helpers import (
    APPID,
    T0,
    make_flow,
    read_jsonl,
    self_signed_chain,
    tls_chain,
    write_flows,
)
from .engine_headers import one

CONFIG = f"""\
mode: enforce
apps:
  - appid: {APPID}
    business_domains: [https://h5.example.org]
    domains:
      request: [https://api.example.com]
      downloadFile: [https://cdn.example.com]
      uploadFile: [https://upload.example.com]
      connectSocket: [wss://ws.example.com]
log:
  path: live-log-must-stay-empty.jsonl
  console: "off"
"""


def capture(tmp_path: Path) -> tuple[Path, Path]:
    """A session on several engines: page loads to hosts on no list (one with a self-signed
    certificate), a wx.request to the same CDN, web-view navigations on and off the list."""
    good, root = tls_chain("img.example.net")
    root_file = tmp_path / "root.pem"
    root.cert_pem.write_to_path(str(root_file))

    def load(engine: str, kind: str, url: str, start: float, **kw: Any) -> Any:
        header_set = one(engine, kind)
        return make_flow(url, start=T0 + start, method=header_set.method,
                         headers=header_set.headers, **kw)

    flows = [
        load("android_xweb", "image", "https://img.example.net/a.webp", 0, chain=good,
             content_type="image/webp", body=b"RIFF"),
        load("ios_pre_16_4", "image", "https://img.example.net/b.webp", 1,
             content_type="image/webp", body=b"RIFF"),
        load("windows_client", "video", "https://img.example.net/v.mp4", 2,
             status=206, content_type="video/mp4", body=b"\x00"),
        load("ios_wkwebview", "image", "https://selfsigned.example.net/c.png", 3,
             chain=self_signed_chain("selfsigned.example.net"), content_type="image/png"),
        load("android_xweb", "wx.request", "https://img.example.net/api", 4),
        load("android_xweb", "webview.navigation", "https://h5.example.org/", 5,
             content_type="text/html", body=b"<html></html>"),
        load("devtools", "webview.xhr", "https://h5api.example.org/list", 6),
        load("windows_client", "webview.navigation", "https://other.example.org/", 7,
             content_type="text/html", body=b"<html></html>"),
        load("ios_pre_16_4", "webview.navigation", "http://h5.example.org/", 8,
             content_type="text/html", body=b"<html></html>"),
    ]
    return write_flows(tmp_path / "session.mitm", flows), root_file


def test_audit_judges_page_loads_as_the_live_proxy_does(tmp_path: Path) -> None:
    flows, root_file = capture(tmp_path)
    config = tmp_path / "wxgate.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "audit.jsonl"

    code = cli_main(["audit", str(flows), "-c", str(config), "--jsonl", str(out),
                     "--cafile", str(root_file), "--no-progress"])

    found = [(e["rule"], e["api"], e["url"]) for e in read_jsonl(out)
             if e["event"] == "violation"]
    assert code == 1
    assert sorted(found) == sorted([
        ("tls.self_signed", "media", "https://selfsigned.example.net/c.png"),
        ("domain.not_listed", "request", "https://img.example.net/api"),
        ("webview.not_listed", "webview", "https://other.example.org/"),
        ("webview.not_listed", "webview", "http://h5.example.org/"),
    ])
    assert not (tmp_path / "live-log-must-stay-empty.jsonl").exists()

    html, junit = tmp_path / "report.html", tmp_path / "report.xml"
    assert cli_main(["report", str(out), "--html", str(html), "--junit", str(junit)]) == 0
    page = html.read_text()
    for rule, _api, url in found:
        assert rule in page and url in page
    assert "webview" in page and "media" in page
    assert 'name="webview.not_listed"' in junit.read_text()


@pytest.mark.parametrize(("entry", "rule"), [
    ("http://h5.example.org", "config.scheme"),
    ("https://192.168.1.10", "config.ip_address"),
    ("https://h5.example.org:8443", "config.invalid"),
])
def test_check_config_applies_the_consoles_rules_to_business_domains(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: str, rule: str) -> None:
    config = tmp_path / "wxgate.yaml"
    config.write_text(CONFIG.replace("[https://h5.example.org]",
                                     f"[https://h5.example.org, '{entry}']"))

    assert cli_main(["check-config", "-c", str(config)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{config}:4: apps[0].business_domains: ")
    assert entry in err[0] and err[0].endswith(f"[{rule}]")
    assert err[-1] == f"{config}: 1 problem"


def test_check_config_accepts_valid_business_domains(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "wxgate.yaml"
    config.write_text(CONFIG)
    assert cli_main(["check-config", "-c", str(config)]) == 0
    assert capsys.readouterr().err == ""
