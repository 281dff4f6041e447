"""evoprune: multi-objective evolutionary pruning of transfer-learning heads (MO-EvoPruneDeepTL)."""

from __future__ import annotations

from pathlib import Path
from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

# Under the strict editable install (README, scripts/test.sh) the layers exist only in a tree of links that
# a .pth file puts on sys.path; a checkout's own evoprune/ folder (this file alone) comes first wherever
# the repository root is on sys.path (pytest, `python -m`, a shell in the checkout). Every evoprune/ folder
# on sys.path joins the package's search path, so evoprune.api is found behind either of them.
__path__ = extend_path(__path__, __name__)

# the version lives below the top package, so the command line reads it without importing upwards
from evoprune.api.version import __version__

if TYPE_CHECKING:
    from collections.abc import Mapping

    from evoprune.api.experiment_result import ExperimentResult
    from evoprune.shared.config import ExperimentConfig

__all__ = ["__version__", "open", "run"]

# The functions below import their machinery when called: `import evoprune` stays fast and loads neither
# TensorFlow nor Ray.


def run(
    config: ExperimentConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    runs: int | None = None,
    max_evaluations: int | None = None,
    workers: int | None = 0,
    out: str | Path | None = None,
    seed: int | None = None,
) -> ExperimentResult:
    """Run an experiment end to end, as `evoprune run` does, and return its results.

    Args:
        config: a config mapping (as the YAML file holds), a YAML file path, or None for the embedded demo.
        runs: independent runs (overrides search.runs).
        max_evaluations: evaluations per run (overrides search.max_evaluations).
        workers: worker actors; 0 (default) evaluates in this process without Ray; None one per GPU.
        out: the results directory (default results/NAME-TIMESTAMP under the working directory).
        seed: the first run's seed (overrides search.seed).

    Returns:
        The results: `runs`, `front(kind=...)` and `evaluations` as pandas DataFrames, `summary`,
        `pick(...)`, `export(...)`.

    """
    from evoprune.api.experiment_result import run_experiment

    return run_experiment(
        config, runs=runs, max_evaluations=max_evaluations, workers=workers, out=out, seed=seed
    )


def open(path: str | Path) -> ExperimentResult:
    """Open the results directory of a finished experiment (see `run` for what the result offers).

    Args:
        path: the directory `evoprune run` wrote.

    Returns:
        The results.

    """
    from evoprune.api.experiment_result import open_results

    return open_results(path)
