"""`wxgate check-config`: every problem located, exit 0 / 1 / 2 as SPEC §2 says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy.version import VERSION as MITMPROXY_VERSION
from wxgate.cli import main
from wxgate.configfile import BUNDLED_DEFAULT

# DevTools project folders shaped like real ones (Tencent's demo, Taro before and after its
# build, a Windows-saved project, tourist mode, a Cocos mini game), each with its config.
PROJECTS = (Path(__file__).parent / "fixtures" / "projects").resolve()
APPID = "wx0123456789abcdef"


def _four_problem_config(tmp_path: Path) -> Path:
    domains = "\n".join(f"        - https://api{i}.example.com" for i in range(21))
    text = (
        "mode: enforce\n"                         # 1
        "apps:\n"                                 # 2
        "  - appid: wx0123456789abcdef\n"         # 3
        "    domains:\n"                          # 4
        "      request:\n"                        # 5
        f"{domains}\n"                            # 6..26
        "        - https://10.0.0.8\n"            # 27
        "        - http://plain.example.com\n"    # 28
        "limits:\n"                               # 29
        "  concurency: 10\n"                      # 30
    )
    path = tmp_path / "wxgate.yaml"
    path.write_text(text)
    return path


def test_check_config_prints_four_located_problems_and_exits_1(tmp_path: Path):
    path = _four_problem_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "wxgate.cli", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith(f"{path}:")
                and "problems" not in line]
    assert len(problems) == 4, done.stderr
    out = done.stderr
    assert f"{path}:5: apps[0].domains.request: has 21 domains" in out
    assert "[config.too_many_domains]" in out
    assert f"{path}:27: apps[0].domains.request: 'https://10.0.0.8' is an IP address" in out
    assert f"{path}:28: apps[0].domains.request: 'http://plain.example.com' must start " \
           "with https://" in out
    assert f"{path}:30: limits.concurency: unknown key 'concurency' in limits; " \
           "did you mean 'concurrency'?" in out
    assert "Traceback" not in out


def test_check_config_accepts_the_bundled_default(capsys: pytest.CaptureFixture[str]):
    assert main(["check-config", "-c", str(BUNDLED_DEFAULT)]) == 0
    assert "ok, 1 app" in capsys.readouterr().out


def test_version_names_wxgate_and_mitmproxy(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("wxgate 0.1.0 (mitmproxy ") and f"mitmproxy {MITMPROXY_VERSION}," in out


# What `wxgate ctl status` and `wxgate --version` load before they act: the argument wiring
# and their own module, never the proxy (mitmproxy, the addons, the YAML policy).
_STARTUP = """
import sys
from wxgate import cli
cli.build_parser({command!r})
{extra}
heavy = ("mitmproxy", "yaml", "structlog", "jinja2", "cryptography", "OpenSSL")
print(" ".join(sorted(m for m in sys.modules
                      if m.split(".")[0] in heavy or m.startswith("wxgate."))))
"""
# Measured at about 0.03 s; the budget leaves room for a busy machine.
STARTUP_BUDGET_S = 0.3


def _startup(command: str, extra: str = "") -> tuple[float, list[str]]:
    """Seconds spent importing (every top-level import, as -X importtime counts it) and the
    wxgate and heavy modules loaded, for `wxgate COMMAND` up to parsing its arguments."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _STARTUP.format(command=command,
                                                                   extra=extra)],
        capture_output=True, text=True, timeout=60, check=True)
    micros = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):
                micros += int(cumulative)
    return micros / 1e6, done.stdout.split()


@pytest.mark.parametrize(("command", "extra", "own"), [
    ("ctl", "", ["wxgate.cli", "wxgate.configfile", "wxgate.ctl"]),
    ("", "cli.versions()", ["wxgate.cli", "wxgate.configfile"]),
], ids=["ctl status", "--version"])
def test_ctl_and_version_start_without_loading_the_proxy(command: str, extra: str,
                                                          own: list[str]):
    seconds, loaded = _startup(command, extra)
    assert loaded == own
    assert seconds < STARTUP_BUDGET_S


def test_help_lists_every_command(
        capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for name in ("run", "ctl", "check-cert", "audit", "report", "check-config"):
        assert f"    {name}" in listed


def check(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    """check-config on one fixture: exit code, stdout lines, stderr lines."""
    code = main(["check-config", "-c", str(PROJECTS / f"{name}.yaml")])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_check_config_prints_what_each_app_resolved_and_from_which_file(
    capsys: pytest.CaptureFixture[str],
):
    """Tencent's miniprogram-demo: sources in miniprogram/, urlCheck switched off in the
    private file that newer DevTools write."""
    code, out, err = check("miniprogram-demo", capsys)
    demo = PROJECTS / "miniprogram-demo"
    app_json = demo / "miniprogram" / "app.json"
    assert (code, err) == (0, [])
    assert out == [
        f"{PROJECTS / 'miniprogram-demo.yaml'}: ok, 1 app",
        f"app {APPID}",
        f"  appid: {APPID} ({demo / 'project.config.json'}:11)",
        f"  Referer version 0 (default): https://servicewechat.com/{APPID}/0/page-frame.html",
        f"  domains request: https://api.example.com ({PROJECTS / 'miniprogram-demo.yaml'}:4)",
        "  domains uploadFile: none",
        "  domains downloadFile: none",
        "  domains connectSocket: none",
        f"  networkTimeout request: 10000 ms ({app_json}:6)",
        "  networkTimeout uploadFile: 60000 ms (default)",
        f"  networkTimeout downloadFile: 10000 ms ({app_json}:7)",
        "  networkTimeout connectSocket: 60000 ms (default)",
        f"  urlCheck: off ({demo / 'project.private.config.json'}:6): DevTools checks no "
        "domains, TLS or certificates; wxgate is the only check",
    ]


P = PROJECTS


@pytest.mark.parametrize(("name", "code", "out_lines", "err"), [
    pytest.param("taro-built", 0, [
        f"  urlCheck: on ({P / 'taro-built' / 'project.private.config.json'}:4)",
        f"  networkTimeout request: 10000 ms ({P / 'taro-built' / 'dist' / 'app.json'}:6)",
    ], [], id="private-turns-urlcheck-on"),
    pytest.param("taro-unbuilt", 0, [
        f"{P / 'taro-unbuilt.yaml'}: ok, 1 app, 1 warning",
        "  networkTimeout request: 60000 ms (default)",
    ], [
        f"{P / 'taro-unbuilt' / 'project.config.json'}:2: warning: miniprogramRoot: 'dist/' is "
        f"not a folder in {P / 'taro-unbuilt'} (a Taro or uni-app project before its build?): "
        "networkTimeout is not read, so the timeouts are the default 60000 ms",
    ], id="missing-root-is-a-warning"),
    pytest.param("windows-root", 0, [
        "  networkTimeout request: 10000 ms "
        f"({P / 'windows-root' / 'src' / 'miniprogram' / 'app.json'}:6)",
    ], [], id="windows-root"),
    pytest.param("tourist", 0, [
        "app touristappid",
        f"  appid: touristappid ({P / 'tourist' / 'project.config.json'}:2)",
        f"  Referer version devtools ({P / 'tourist.yaml'}:3): "
        "https://servicewechat.com/touristappid/devtools/page-frame.html",
    ], [], id="tourist-mode"),
    pytest.param("tourist-yaml-appid", 0, [
        f"  appid: {APPID} ({P / 'tourist-yaml-appid.yaml'}:2)",
    ], [], id="yaml-appid-wins-over-touristappid"),
    pytest.param("cocos-game", 0, [
        f"  appid: {APPID} ({P / 'cocos-game.yaml'}:2)",
        f"  networkTimeout request: 5000 ms ({P / 'cocos-game' / 'game.json'}:4)",
        f"  networkTimeout connectSocket: 5000 ms ({P / 'cocos-game' / 'game.json'}:5)",
    ], [], id="game-reads-game-json-and-yaml-appid-wins-over-placeholder"),
    pytest.param("cocos-game-no-appid", 1, [], [
        f"{P / 'cocos-game' / 'project.config.json'}:2: appid: \"wxYOURAPPIDHERE\" is not an "
        "appid (wx followed by 16 hex digits, or touristappid): give the app's appid in "
        "apps[0].appid",
        f"{P / 'cocos-game-no-appid.yaml'}: 1 problem",
    ], id="placeholder-appid-without-yaml-appid"),
    pytest.param("string-timeout", 1, [], [
        f"{P / 'string-timeout' / 'app.json'}:4: networkTimeout.request: is a string "
        "\"10000\"; a networkTimeout is an integer number of milliseconds [config.timeout]",
        f"{P / 'string-timeout.yaml'}: 1 problem",
    ], id="string-timeout"),
    pytest.param("no-project-config", 0, [
        f"  networkTimeout request: 8000 ms ({P / 'no-project-config' / 'app.json'}:6)",
        "  urlCheck: not set in the project",
    ], [], id="no-project-config-with-yaml-appid"),
    pytest.param("no-project-config-no-appid", 1, [], [
        f"{P / 'no-project-config-no-appid.yaml'}:2: apps[0].appid: is missing, and "
        f"{P / 'no-project-config'} has no project.config.json to give it",
        f"{P / 'no-project-config-no-appid.yaml'}: 1 problem",
    ], id="no-project-config-no-appid"),
])
def test_check_config_on_devtools_projects(
    capsys: pytest.CaptureFixture[str], name: str, code: int, out_lines: list[str],
    err: list[str],
):
    got_code, out, got_err = check(name, capsys)
    assert (got_code, got_err) == (code, err)
    missing = [line for line in out_lines if line not in out]
    assert not missing, "\n".join(out)
    if code:
        assert out == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [(None, "does not exist"), ("mode: [unclosed\n", "is not valid YAML")],
    ids=["missing file", "broken yaml"],
)
def test_check_config_exits_2_on_an_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, needle: str,
):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(path) in err and len(err.strip().splitlines()) == 1

