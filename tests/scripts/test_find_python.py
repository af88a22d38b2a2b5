"""scripts/find-python.sh: make's choice of interpreter (Python >= 3.12, for mitmproxy >= 12)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "find-python.sh"


def _bare_path(tmp_path: Path) -> Path:
    """A PATH folder with only the tools the script needs, and no Python at all."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "ls", "sort"):
        found = shutil.which(tool)
        assert found
        (bare / tool).symlink_to(found)
    return bare


def _run(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(path), "HOME": str(home)})


def test_an_older_python3_on_path_is_passed_over_for_pyenvs_3_12(tmp_path: Path):
    bare = _bare_path(tmp_path)
    (bare / "python3").write_text("#!/bin/sh\nexit 1\n")  # answers "too old" to the probe
    (bare / "python3").chmod(0o755)
    pyenv = tmp_path / ".pyenv" / "versions" / "3.12.9" / "bin"
    pyenv.mkdir(parents=True)
    (pyenv / "python").symlink_to(sys.executable)  # the suite's own Python is >= 3.12
    done = _run(bare, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(pyenv / "python")


def test_without_python_3_12_says_in_one_sentence_what_to_install(tmp_path: Path):
    done = _run(_bare_path(tmp_path), tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Python 3.12" in lines[0] and "install" in lines[0]
