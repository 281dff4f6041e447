"""What the command line imports to start: printing its version or help loads none of the heavy stacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

TIMEOUT_S = 120
# Ray, the web stack, Redis, TensorFlow/Keras/JAX and the array/model libraries the commands use: none of
# them is needed to print the version or the list of commands.
HEAVY = (
    "ray",
    "starlette",
    "fastapi",
    "uvicorn",
    "aiohttp",
    "redis",
    "tensorflow",
    "keras",
    "jax",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "pydantic_settings",
)
# validate reads and checks a config (pydantic, YAML) and runs nothing
VALIDATE_HEAVY = ("ray", "starlette", "fastapi", "aiohttp", "redis", "tensorflow", "keras", "jax")


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter imports to run `evoprune ARGV` (from `python -X importtime`)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "evoprune.api.cli", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []], ids=["version", "help", "bare"])
def test_version_and_help_import_nothing_heavy(argv):
    loaded = top_level(imported_by(*argv))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_version_and_help_import_no_command_module():
    loaded = imported_by("--help")
    assert not {name for name in loaded if name.startswith("evoprune.api.cli.")} - {
        "evoprune.api.cli.__main__",
        "evoprune.api.cli.main",
        "evoprune.api.cli.commands",
    }


def test_validate_imports_no_runtime():
    loaded = top_level(imported_by("validate"))
    assert not loaded & set(VALIDATE_HEAVY), sorted(loaded & set(VALIDATE_HEAVY))


def test_import_evoprune_loads_neither_tensorflow_nor_ray():
    probe = (
        "import sys, evoprune\nprint([m for m in ('tensorflow', 'keras', 'jax', 'ray') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_listing_is_the_registered_commands(capsys):
    from evoprune.api.cli.commands import COMMANDS
    from evoprune.api.cli.main import build_parser

    full = build_parser()
    listed = build_parser("")
    for parser in (full, listed):
        with pytest.raises(SystemExit):
            parser.parse_args(["--help"])
    full_help, listed_help = capsys.readouterr().out.split("usage:")[1:]
    assert full_help == listed_help
    assert all(name in full_help for name in COMMANDS)
