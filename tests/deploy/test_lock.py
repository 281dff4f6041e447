"""deploy/lock.sh gives the same pins every time; dev, CI and the image run one Python, one stack (issue 23).

The lock runs against PyPI (uv, a test extra): twice, into temporary files, which must equal each other and
the committed deploy/constraints.txt. The image, the dev machines and CI all run Python 3.11, so this
environment (installed by scripts/test.sh with the constraints) must hold the image's versions, and a fresh
interpreter must import the worker stack (JAX, Keras, Ray, TensorFlow) and the API stack at them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.deploy.tools import CONSTRAINTS, LOCK_SCRIPT, ROOT, dockerfile_arg_default

LOCK_TIMEOUT_S = 300
# installed only on GPU machines (the `gpu` extra): the CPU test environment does not carry them
GPU_ONLY = re.compile(r"nvidia-.*|jax-cuda12-.*")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, tuple[str, Marker | None]]:
    """name -> (version, environment marker) of every pin of a uv-compiled constraints file."""
    pins = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)\s*(?:;\s*(.+))?", line.strip())
        if match:
            marker = Marker(match.group(3)) if match.group(3) else None
            pins[_normalised(match.group(1))] = (match.group(2), marker)
    return pins


def _lock(output: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    venv_bin = str(Path(sys.executable).parent)  # where the test extra's uv lives
    return subprocess.run(
        ["bash", str(LOCK_SCRIPT)],
        env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "OUTPUT": str(output),
             **environment},
        capture_output=True, text=True, timeout=LOCK_TIMEOUT_S, check=False, cwd=ROOT,
    )  # fmt: skip


def _lock_python() -> str:
    match = re.search(r"^PYTHON_VERSION=(\d+\.\d+)$", LOCK_SCRIPT.read_text(), re.MULTILINE)
    assert match is not None, "deploy/lock.sh names no PYTHON_VERSION"
    return match.group(1)


def test_the_lock_run_twice_gives_the_committed_pins(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    for output in (first, second):
        result = _lock(output)
        assert result.returncode == 0, result.stderr
    assert first.read_text() == second.read_text()
    committed = CONSTRAINTS.read_text()
    changed = {
        name: (pin[0], _pins(committed).get(name, ("absent",))[0])
        for name, pin in _pins(first.read_text()).items()
        if _pins(committed).get(name, ("absent",))[0] != pin[0]
    }
    assert first.read_text() == committed, f"deploy/constraints.txt is not what lock.sh gives: {changed}"


def test_the_lock_refuses_a_cutoff_that_has_not_passed(tmp_path):
    # a date still to come lets every release made before it in: the cause of the old lock's drift
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = _lock(tmp_path / "out.txt", EXCLUDE_NEWER=tomorrow)
    assert result.returncode != 0 and "not at least a day in the past" in result.stderr
    assert not (tmp_path / "out.txt").exists()


def test_the_image_dev_and_ci_run_one_python():
    locked = _lock_python()
    assert re.fullmatch(rf"python:{re.escape(locked)}-slim-\w+", dockerfile_arg_default("BASE_IMAGE"))
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == locked, (
        f"this environment runs Python {sys.version.split()[0]}, the image {locked}"
    )
    assert f'python_version = "{locked}"' in (ROOT / "pyproject.toml").read_text()  # mypy checks that one


def test_this_environment_holds_the_images_versions():
    distributions = list(metadata.distributions())
    installed = {_normalised(d.metadata["Name"]): d.version for d in distributions}
    # what this interpreter needs: a pin resolved for Python 3.11.0 (async-timeout, for redis on < 3.11.3)
    # constrains nothing on a later 3.11, where no installed package asks for it
    needed = {
        _normalised(requirement.name)
        for distribution in distributions
        for requirement in map(Requirement, distribution.requires or [])
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""})
    }
    differ = {}
    for name, (version, marker) in _pins(CONSTRAINTS.read_text()).items():
        if GPU_ONLY.fullmatch(name) or (marker is not None and not marker.evaluate()):
            continue
        if installed.get(name) != version and (name in installed or name in needed):
            differ[name] = (version, installed.get(name))
    assert not differ, f"(image, here) differ; install with scripts/test.sh (--constraint): {differ}"


def test_a_fresh_interpreter_imports_the_worker_and_api_stacks_at_the_images_versions():
    program = (
        "import json, jax, keras, ray, tensorflow, fastapi, uvicorn, redis, pydantic\n"
        "import evoprune.api.http.app, evoprune.workers\n"
        "stack = (jax, keras, ray, tensorflow, fastapi, uvicorn, redis, pydantic)\n"
        "versions = {module.__name__: module.__version__ for module in stack}\n"
        "print(json.dumps({'backend': keras.backend.backend(), 'versions': versions}))\n"
    )
    # the workers' backend, as the image's ray-worker sets it
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, timeout=LOCK_TIMEOUT_S, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    pins = _pins(CONSTRAINTS.read_text())
    assert {name: pins[name][0] for name in report["versions"]} == report["versions"]


def test_tensorflow_in_the_gpu_image_gets_its_own_cuda_libraries():
    """Every requirement of `tensorflow[and-cuda]` (cuRAND, cuDNN, ...) is pinned, at a version it accepts."""
    pins = _pins(CONSTRAINTS.read_text())
    requirements = [Requirement(text) for text in metadata.requires("tensorflow") or []]
    cuda = [r for r in requirements if r.marker is not None and 'extra == "and-cuda"' in str(r.marker)]
    assert cuda, "tensorflow declares no and-cuda extra"
    for requirement in cuda:
        name = _normalised(requirement.name)
        assert name in pins, f"{name} (tensorflow[and-cuda]) is not in deploy/constraints.txt"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (requirement, pins[name][0])
    assert "nvidia-curand-cu12" in pins  # the one the JAX wheels alone never brought


@pytest.mark.parametrize("extra", ["gpu"])
def test_the_gpu_extra_asks_for_both_frameworks_cuda(extra):
    import tomllib

    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {Requirement(text).name: Requirement(text).extras for text in requirements[extra]}
    assert names == {"jax": {"cuda12"}, "tensorflow": {"and-cuda"}}
