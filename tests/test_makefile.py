"""The Makefile (issue 18): `make run` installs only what running needs, `make test` adds
the development tools; both start from the Python that scripts/find-python.sh finds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a fresh machine (make -n: nothing is run)."""
    # Under `make test` (CI) the outer make's MAKEFLAGS/MAKELEVEL would make this one print
    # "Entering directory" lines around its plan.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}",
         f"PYTHON={sys.executable}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_wxgate_without_the_development_tools(tmp_path: Path):
    plan = planned("run", tmp_path)
    assert "pip install -q -e .\n" in plan
    assert "[dev]" not in plan
    assert plan.rstrip().endswith("wxgate run -c config/default.yaml -p 8080")


def test_make_test_adds_the_development_tools_then_lints_and_tests(tmp_path: Path):
    plan = planned("test", tmp_path).splitlines()
    dev = next(i for i, line in enumerate(plan) if "pip install -q -e '.[dev]'" in line)
    assert any("ruff check addons tests" in line for line in plan[dev:])
    assert plan[-1].endswith("bash scripts/test-lines.sh")


def test_python_is_found_by_the_script_unless_given():
    assert "PYTHON ?= $(shell bash scripts/find-python.sh 2>/dev/null)" in (
        REPO / "Makefile").read_text()
