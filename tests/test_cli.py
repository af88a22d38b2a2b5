"""`wxgate check-config`: every problem located, exit 0 / 1 / 2 as SPEC §2 says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from wxgate.cli import BUNDLED_DEFAULT, config_path, main


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


def test_config_path_prefers_flag_then_env_then_cwd_then_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WXGATE_CONFIG", raising=False)
    assert config_path(None) == BUNDLED_DEFAULT
    (tmp_path / "wxgate.yaml").write_text("{}")
    assert config_path(None) == Path("wxgate.yaml")
    monkeypatch.setenv("WXGATE_CONFIG", "/env.yaml")
    assert config_path(None) == Path("/env.yaml")
    assert config_path("given.yaml") == Path("given.yaml")
