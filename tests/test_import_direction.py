"""Imports point one way: evoprune → api → coordinator → workers → shared, and within layers; _x stay home."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("api", "coordinator", "workers", "shared", "benchmarks")
ALLOWED = {
    "api": {"api", "coordinator", "workers", "shared", "benchmarks"},
    "coordinator": {"coordinator", "workers", "shared"},
    "workers": {"workers", "shared"},
    "shared": {"shared"},
    # benchmarks drive the library; the command line may run them, never the other way round
    "benchmarks": {"benchmarks", "coordinator", "workers", "shared"},
}


def _imported_modules(path: Path) -> set[str]:
    """Every evoprune module a file imports (also inside functions), as dotted names below `evoprune.`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in LAYERS:
                raise AssertionError(f"{path}: imports {name!r} outside the evoprune namespace")
            if parts[0] == "evoprune" and len(parts) > 1:
                found.add(".".join(parts[1:]))
    return found


def _imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)} & set(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_downwards(layer: str) -> None:
    wrong = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for package in _imported_packages(path) - ALLOWED[layer]:
            wrong.append(f"{path.relative_to(ROOT)} imports {package}")
    assert not wrong, "imports pointing the wrong way:\n" + "\n".join(wrong)


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            name = ".".join(part for part in relative.parts if part != "__init__")
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        # `from evoprune.x import y` names either module x.y or an attribute y of x: keep what is a module
        graph[name] = {target for target in _imported_modules(path) if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_loops() -> None:
    loops = _cycles(_module_graph())
    assert not loops, "modules that import each other (also through lazy imports):\n" + "\n".join(
        " ⇄ ".join(loop) for loop in loops
    )


# Inside a layer its parts import one way too (a module belongs to its longest key): what api/ shares sits
# below both halves; the command line may start the HTTP half, never the reverse; evaluation builds on
# features, export and analysis on both, and neither on the other.
WINGS = {
    "api": ("api.cli", "api.http"),
    "api.cli": (),
    "api.http": ("api.cli",),
    "workers": ("workers.features", "workers.evaluation", "workers.export", "workers.analysis"),
    "workers.features": ("workers.evaluation", "workers.export", "workers.analysis"),
    "workers.evaluation": ("workers.export", "workers.analysis"),
    "workers.export": ("workers.analysis",),
    "workers.analysis": ("workers.export",),
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _wing_arrows(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(graph.items()):
        wings = [wing for wing in WINGS if _within(module, wing)]
        if not wings:
            continue
        forbidden = WINGS[max(wings, key=len)]
        wrong += [f"{module} imports {target}" for target in sorted(targets)
                  if any(_within(target, part) for part in forbidden)]  # fmt: skip
    return wrong


def test_wings_import_one_way() -> None:
    wrong = _wing_arrows(_module_graph())
    assert not wrong, "imports between the parts of a layer pointing the wrong way:\n" + "\n".join(wrong)


def _private_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a private module (`_name`) from outside the package that holds it."""
    wrong = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part[:1] == "_" and part[:2] != "__"]
            if private and not _within(module, ".".join(parts[: private[0]])):
                wrong.append(f"{module} imports {target}")
    return wrong


def test_private_modules_stay_in_their_package() -> None:
    wrong = _private_arrows(_module_graph())
    assert not wrong, "private modules imported from outside their package:\n" + "\n".join(wrong)


def test_checker_sees_a_wrong_wing_arrow_and_a_private_module_leaving_home() -> None:
    graph = {
        "api.http.app": {"api.cli.main", "api.settings"},
        "api.cli.serve": {"api.http.app", "api.http._sse", "api._progress"},
        "workers.features.assemble": {"workers.evaluation.evaluator"},
        "workers.evaluation.evaluator": {"workers.evaluation._trainer", "workers.features.feature_set"},
    }
    assert _wing_arrows(graph) == [
        "api.http.app imports api.cli.main",
        "workers.features.assemble imports workers.evaluation.evaluator",
    ]
    assert _private_arrows(graph) == ["api.cli.serve imports api.http._sse"]


def test_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from evoprune.coordinator import nsga2\nimport evoprune.api.cli.main\n")
    assert _imported_packages(module) == {"coordinator", "api"}


def test_checker_refuses_the_old_top_level_names(tmp_path: Path) -> None:
    module = tmp_path / "old.py"
    module.write_text("from shared.config import ExperimentConfig\n")
    with pytest.raises(AssertionError, match="outside the evoprune namespace"):
        _imported_modules(module)


def test_checker_sees_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _top_package_imports(path: Path) -> set[str]:
    """What a file takes from above the layers: `from evoprune import x`, `import evoprune`, `evoprune._x`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "evoprune" and node.level == 0:
            found |= {f"evoprune.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name == "evoprune"}
    # a module beside evoprune/__init__.py (evoprune._version) is above the layers as much as the package
    found |= {f"evoprune.{name.split('.')[0]}" for name in _imported_modules(path)} - {
        f"evoprune.{layer}" for layer in LAYERS
    }
    return found


def test_the_top_package_may_import_any_layer_but_no_layer_imports_it() -> None:
    # evoprune/__init__.py sits above api: it reaches every layer (lazily); no layer reaches back up, not
    # even for the version string (api/version.py holds it, and the top package re-exports it)
    for path in sorted((ROOT / "evoprune").rglob("*.py")):
        assert _imported_packages(path) <= set(LAYERS)
    wrong = [
        f"{path.relative_to(ROOT)} imports {name} from above the layers"
        for layer in LAYERS
        for path in sorted((ROOT / layer).rglob("*.py"))
        for name in sorted(_top_package_imports(path))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "source",
    [
        "from evoprune import __version__\n",
        "import evoprune\n",
        "from evoprune._version import __version__\n",
    ],
)
def test_checker_sees_an_arrow_up_to_the_top_package(tmp_path: Path, source: str) -> None:
    module = tmp_path / "up.py"
    module.write_text(source + "from evoprune.shared import config\n")
    assert len(_top_package_imports(module)) == 1


def test_import_evoprune_stays_light() -> None:
    heavy = ("tensorflow", "keras", "jax", "ray", "pandas", "pyarrow", "fastapi")
    probe = f"import sys, evoprune; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
