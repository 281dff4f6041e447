"""The wheel installs under one namespace, `evoprune`, and runs the embedded demo from a fresh environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 600
COPY_IGNORED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache")
# `evoprune run`'s default output folder, at the root only: coordinator/results is a package
ROOT_IGNORED = ("results",)


def _ignored(folder: str, names: list[str]) -> set[str]:
    ignored = set(shutil.ignore_patterns(*COPY_IGNORED)(folder, names))
    return ignored | ({name for name in names if name in ROOT_IGNORED} if Path(folder) == ROOT else set())


def _site_packages(environment: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return environment / relative


@pytest.mark.slow
def test_wheel_installs_only_evoprune_and_runs_the_demo(tmp_path: Path) -> None:
    # a copy of the sources: setuptools would otherwise reuse the checkout's build/ folder, whose stale files
    # can hide a package-data rule that no longer ships them
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_ignored)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(source)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("evoprune-*.whl")

    environment = tmp_path / "env"
    venv.create(environment, with_pip=True)
    site = _site_packages(environment)
    before = {path.name for path in site.iterdir()}
    # The dependencies (TensorFlow, Ray, ...) come from this interpreter's site-packages, as a plain path
    # entry: its .pth files (among them the editable install's finder) are not run, so only the wheel's
    # evoprune can be imported.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr

    added = {path.name for path in site.iterdir()} - before - {"dependencies.pth"}
    top_level = {name for name in added if not name.endswith(".dist-info") and name != "__pycache__"}
    assert top_level == {"evoprune"}, f"the wheel put these at the top of site-packages: {sorted(top_level)}"
    # every package of the source tree is in the wheel (setuptools installs only the packages it is told)
    for layer in ("api", "coordinator", "workers", "shared", "benchmarks", "configs"):
        for marker in (ROOT / layer).rglob("__init__.py"):
            relative = marker.relative_to(ROOT)
            assert (site / "evoprune" / relative).is_file(), relative
    assert (site / "evoprune" / "configs" / "demo.yaml").is_file()
    assert (site / "evoprune" / "api" / "http" / "web" / "index.html").is_file()
    assert (site / "evoprune" / "py.typed").is_file()  # PEP 561: type checkers read its annotations

    out = tmp_path / "demo-results"
    work = tmp_path / "elsewhere"  # away from the checkout, so nothing is imported from its folders
    work.mkdir()
    environment_variables = {**os.environ, "PYTHONPATH": ""}
    environment_variables.pop("REDIS_URL", None)
    run = subprocess.run(
        [str(environment / "bin" / "evoprune"), "run", "--runs", "1", "--max-evaluations", "30",
         "--workers", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, cwd=work,
        env=environment_variables,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["evaluations"] == 30
    imported_from = subprocess.run(
        [str(python), "-c", "import evoprune.workers.evaluation.evaluator as m; print(m.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=work, env=environment_variables,
    ).stdout.strip()  # fmt: skip
    assert imported_from.startswith(str(site)), imported_from
