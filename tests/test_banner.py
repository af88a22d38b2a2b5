"""The start-up banner: listen address, phone set-up, a line per app, the urlCheck warning."""

from __future__ import annotations

from pathlib import Path

from wxgate.banner import banner_lines, lan_addresses
from wxgate.policy.config import load_config


def test_banner_names_listen_address_apps_and_urlcheck_off(tmp_path: Path):
    project = tmp_path / "mp"
    project.mkdir()
    (project / "project.config.json").write_text(
        '{"appid": "wx0123456789abcdef", "setting": {"urlCheck": false}}')
    (project / "app.json").write_text('{"networkTimeout": {"request": 5000}}')
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text("apps:\n  - project: mp\n    domains:\n"
                   "      request: [https://api.example.com]\n")
    lines = banner_lines(load_config(cfg), "enforce", [("127.0.0.1", 8080)], "/tmp/v.jsonl")
    text = "\n".join(lines)
    assert "wxgate proxy listening on 127.0.0.1:8080" in text
    assert "http://mitm.it" in text and "full trust" in text
    app_line = next(line for line in lines if "app wx0123456789abcdef" in line)
    assert "request 1" in app_line and "5000/" in app_line
    assert "urlCheck off: DevTools is not checking" in app_line
    assert "violation log: /tmp/v.jsonl" in text


def test_lan_addresses_are_never_loopback():
    assert all(not a.startswith("127.") for a in lan_addresses())


def test_banner_shows_a_project_before_its_build_and_the_default_timeouts(tmp_path: Path):
    project = tmp_path / "taro"
    project.mkdir()
    (project / "project.config.json").write_text(
        '{"appid": "wx0123456789abcdef", "miniprogramRoot": "dist/"}')
    cfg = tmp_path / "wxgate.yaml"
    cfg.write_text("apps:\n  - project: taro\n")
    lines = banner_lines(load_config(cfg), "enforce", [("127.0.0.1", 8080)], None)
    app_line = next(line for line in lines if "app wx0123456789abcdef" in line)
    assert "timeouts ms 60000/60000/60000/60000" in app_line
    assert f"  {project / 'project.config.json'}:1: warning: miniprogramRoot: 'dist/' is not " \
           f"a folder in {project} (a Taro or uni-app project before its build?): " \
           "networkTimeout is not read, so the timeouts are the default 60000 ms" in lines
