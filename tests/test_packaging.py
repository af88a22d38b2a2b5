"""wxgate as a new user installs it: the wheel built from this checkout, installed into a
fresh venv outside it, run in an empty folder. The default config comes with the wheel,
the package imports as `wxgate`, and nothing named `addons` is installed (SPEC §1).

The fresh venv borrows the project venv's dependencies through a folder of links that
leaves out wxgate's own editable install, so nothing is downloaded and the checkout's
source cannot leak in.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from .audit_helpers import MP, T0, har_entry, read_jsonl, write_har

REPO = Path(__file__).resolve().parents[1]
# What the wheel is built from: the same as the Docker builder copies.
SOURCES = ("pyproject.toml", "README.md", "addons")
pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    wxgate: Path
    site_packages: Path
    workdir: Path  # empty, outside the checkout

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.wxgate), *args], cwd=self.workdir, env=clean_env(),
                              capture_output=True, text=True, timeout=timeout)


def clean_env() -> dict[str, str]:
    """No PYTHONPATH, no WXGATE_* and no virtualenv of the caller's."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("WXGATE_", "PYTHON", "VIRTUAL_ENV"))}


def dependencies_without_wxgate(into: Path) -> Path:
    """A folder of links to the project venv's installed packages, less wxgate's own
    editable install (its dist-info, its .pth and finder)."""
    into.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("wxgate", "__editable__", "addons")) or name.endswith(".pth"):
            continue
        (into / entry.name).symlink_to(entry)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.resolve().is_relative_to(REPO)
    source = base / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("wxgate-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=clean_env()).stdout.strip())
    deps = dependencies_without_wxgate(base / "deps")
    (site_packages / "zz_wxgate_test_dependencies.pth").write_text(f"{deps}\n")
    workdir = base / "empty"
    workdir.mkdir()
    return Installed(wheel, python, venv / "bin" / "wxgate", site_packages, workdir)


def test_the_wheel_holds_the_package_wxgate_with_its_default_config_and_no_addons(
        installed: Installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert "wxgate/default.yaml" in names
    assert "wxgate/wxgate_addons.py" in names and "wxgate/policy/config.py" in names
    assert not any(t == "addons" or t.startswith("addons.") for t in top), sorted(top)
    assert not any(t in ("config", "tests", "docker") for t in top), sorted(top)


def test_wxgate_imports_from_the_install_and_addons_does_not_exist(installed: Installed):
    done = subprocess.run(
        [str(installed.python), "-c", "import wxgate, wxgate.cli; print(wxgate.__file__)"],
        cwd=installed.workdir, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.site_packages)
    done = subprocess.run([str(installed.python), "-c", "import addons"],
                          cwd=installed.workdir, env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'addons'" in done.stderr


def test_version_names_wxgate_and_mitmproxy(installed: Installed):
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"wxgate 0\.1\.0 \(mitmproxy {re.escape(MITMPROXY_VERSION)}, "
                        r"Python 3\.\d+\.\d+\)", done.stdout.strip()), done.stdout


def test_check_config_without_a_config_checks_the_bundled_default(installed: Installed):
    done = installed.run("check-config")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == f"{installed.site_packages / 'wxgate' / 'default.yaml'}: ok, 1 app"


def test_audit_judges_a_capture_against_the_bundled_default(installed: Installed):
    capture = write_har(installed.workdir / "devtools.har", [
        har_entry("https://api.example.com/ok", start=T0, headers=MP),
        har_entry("https://evil.example.net/x", start=T0 + 1, headers=MP),
    ])
    out = installed.workdir / "audit.jsonl"
    done = installed.run("audit", str(capture), "--jsonl", str(out), "--no-progress")
    assert done.returncode == 1, done.stderr  # an error-level violation
    rules = [(e["rule"], e["host"]) for e in read_jsonl(out) if e.get("event") == "violation"]
    assert rules == [("domain.not_listed", "evil.example.net")]
    assert "Traceback" not in done.stderr


def test_run_starts_the_proxy_with_the_bundled_default_and_stops_on_sigterm(
        installed: Installed):
    proc = subprocess.Popen(
        [str(installed.wxgate), "run", "-p", "0", "--listen-host", "127.0.0.1",
         "--set", f"confdir={installed.workdir / 'ca'}"],
        cwd=installed.workdir, env={**clean_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    listening = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "wxgate proxy listening on 127.0.0.1:" in line:
                listening.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert listening.wait(60), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    banner = "".join(lines)
    assert code == 0, banner
    default = installed.site_packages / "wxgate" / "default.yaml"
    assert f"config {default}" in banner
    assert "app wx0123456789abcdef v0" in banner
    # The bundled default's relative log path: the folder it was started in.
    assert (installed.workdir / "wxgate-violations.jsonl").is_file()
