"""Which server paths a posted config may name: only those under the server's allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

from evoprune.shared.config import ExperimentConfig

# the source kinds whose text after the colon is a path on the server (tfds: and sklearn: name datasets)
PATH_SOURCE_KINDS = frozenset({"folder", "features"})


def _resolved(text: str) -> Path:
    # the workers expand `~` the same way; resolve() removes `..` and follows symbolic links, so a link
    # inside a root that points outside it is judged by where it leads
    return Path(text).expanduser().resolve()


def named_paths(config: ExperimentConfig) -> list[tuple[str, str]]:
    """Every server path a config names, with its field.

    Args:
        config: a validated config.

    Returns:
        (dotted field, path text) pairs.

    """
    paths: list[tuple[str, str]] = []
    sources = [("dataset.source", config.dataset.source)]
    sources += [(f"ood.{index}.source", ood.source) for index, ood in enumerate(config.ood)]
    for field, source in sources:
        kind, _, rest = source.partition(":")
        if kind in PATH_SOURCE_KINDS:
            paths.append((field, rest))
    if config.cache_dir is not None:
        paths.append(("cache_dir", config.cache_dir))
    weights = config.backbone.weights
    if weights not in (None, "imagenet"):
        paths.append(("backbone.weights", weights))
    # an MLflow store on the runner's disk (a folder, file:, sqlite:) is written there like a results folder
    tracking_store = config.tracking.local_store_path()
    if tracking_store is not None:
        paths.append(("tracking.mlflow_uri", tracking_store))
    return paths


def path_problems(config: ExperimentConfig, roots: list[Path]) -> list[str]:
    """The paths of a posted config that lie outside every allowed root.

    Args:
        config: a validated config.
        roots: resolved allowed roots.

    Returns:
        One "field: message" per path outside them.

    """
    problems = []
    shown = ", ".join(str(root) for root in roots) or "none"
    for field, text in named_paths(config):
        if not Path(text).expanduser().is_absolute():
            # a relative path is read from the runner's working folder, which the server cannot vouch for
            problems.append(f"{field}: {text!r} is relative; name an absolute path under {shown}")
            continue
        try:
            path = _resolved(text)
        except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, a NUL byte
            problems.append(f"{field}: {text!r} cannot be resolved ({type(error).__name__})")
            continue
        if not any(path == root or path.is_relative_to(root) for root in roots):
            problems.append(
                f"{field}: {text!r} is outside the server's allowed folders ({shown}; "
                "EVOPRUNE_ALLOWED_ROOTS adds more)"
            )
    return problems


def resolve_roots(folders: list[str | os.PathLike[str]]) -> list[Path]:
    """Allowed roots as resolved absolute paths, duplicates dropped, order kept.

    Args:
        folders: the configured folders (need not exist yet).

    Returns:
        The resolved roots.

    """
    roots: list[Path] = []
    for folder in folders:
        root = _resolved(os.fspath(folder))
        if root not in roots:
            roots.append(root)
    return roots


def reached_without_links(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether `path` lies under `root` and no component between them is a symbolic link.

    A results directory holds plain files and folders only: a link on a folder inside it (`analysis/`,
    `exports/`) could expose anything the server can read. `root` itself may be a link (a mounted volume).

    Args:
        path: a file named under `root`.
        root: the results directory.

    Returns:
        True when `path`, resolved, is exactly `root` (resolved) joined with the rest of `path`.

    """
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        return False
    if ".." in relative.parts:
        return False
    return Path(path).resolve() == Path(root).resolve() / relative
