"""Imports point one way: api → coordinator → workers → shared; shared imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("api", "coordinator", "workers", "shared")
ALLOWED = {
    "api": {"api", "coordinator", "workers", "shared", "benchmarks"},
    "coordinator": {"coordinator", "workers", "shared"},
    "workers": {"workers", "shared"},
    "shared": {"shared"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & {*LAYERS, "benchmarks"}


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_downwards(layer: str) -> None:
    wrong = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for package in _imported_packages(path) - ALLOWED[layer]:
            wrong.append(f"{path.relative_to(ROOT)} imports {package}")
    assert not wrong, "imports pointing the wrong way:\n" + "\n".join(wrong)


def test_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from coordinator import nsga2\nimport api.cli\n")
    assert _imported_packages(module) == {"coordinator", "api"}
