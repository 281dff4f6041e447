"""The results directory: config.yaml, evaluations.parquet, front.parquet, summary.json and plots."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.shared.atomic_files import atomic_file, write_atomic
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import minimisation_of
from evoprune.shared.pareto import ParetoArchive, hypervolume, pareto_mask

EVALUATION_COLUMNS = (
    "run",
    "step",
    "mask",
    "mask_length",
    "accuracy",
    "active_fraction",
    "auroc",
    "cached",
    "seconds",
    "worker",
)
TEST_COLUMNS = ("test_accuracy", "test_auroc")
FRONT_COLUMNS = ("run", "mask", "mask_length", "accuracy", "active_fraction", "auroc")
AGGREGATE_RUN = -1
VERSIONED_PACKAGES = ("evoprune", "numpy", "deap", "ray", "pyarrow", "tensorflow", "keras", "jax")

COLUMN_TYPES = {
    "run": pa.int32(),
    "step": pa.int32(),
    "mask": pa.string(),
    "mask_length": pa.int32(),
    "accuracy": pa.float64(),
    "active_fraction": pa.float64(),
    "auroc": pa.float64(),
    "cached": pa.bool_(),
    "seconds": pa.float64(),
    "worker": pa.string(),
    "test_accuracy": pa.float64(),
    "test_auroc": pa.float64(),
}


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in (run, step, position in step) order: the order a single-threaded run would produce."""
    return sorted(rows, key=lambda row: (row["run"], row["step"], row["slot"]))


def rows_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pa.Table:
    """The rows as an Arrow table of `columns`, typed as evaluations.parquet types them."""
    return pa.table(
        {name: pa.array([row.get(name) for row in rows], type=COLUMN_TYPES[name]) for name in columns}
    )


def _minimisation(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array(
        [minimisation_of((r["accuracy"], r["active_fraction"], r["auroc"])) for r in rows], dtype=np.float64
    ).reshape(-1, 3)


def front_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Select the non-dominated rows, one per distinct mask, best accuracy first.

    Args:
        rows: evaluation rows (any runs).

    Returns:
        The Pareto-optimal rows.

    """
    distinct: dict[str, dict[str, Any]] = {}
    for row in rows:
        distinct.setdefault(row["mask"], row)
    unique = list(distinct.values())
    if not unique:
        return []
    keep = pareto_mask(_minimisation(unique))
    front = [row for row, kept in zip(unique, keep, strict=True) if kept]
    return sorted(front, key=lambda r: (-r["accuracy"], r["active_fraction"], -r["auroc"], r["mask"]))


def hypervolume_history(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Hypervolume of a run's archive after each of its steps.

    Args:
        rows: one run's rows.

    Returns:
        (evaluations so far, hypervolume) per step.

    """
    archive = ParetoArchive()
    history = []
    done = 0
    ordered = sort_rows(rows)
    for step in sorted({row["step"] for row in ordered}):
        members = [row for row in ordered if row["step"] == step]
        archive.add(_minimisation(members), [row["mask"] for row in members])
        done += len(members)
        history.append((done, archive.hypervolume))
    return history


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide results."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_config(results_dir: Path, config: ExperimentConfig) -> None:
    """Write config.yaml, the fully resolved config.

    Args:
        results_dir: the experiment's results directory.
        config: the resolved config.

    """
    write_atomic(ResultsLayout(results_dir).config, config.to_yaml())


def write_results(
    results_dir: Path,
    config: ExperimentConfig,
    rows: list[dict[str, Any]],
    extra_summary: dict[str, Any],
) -> dict[str, Any]:
    """Write evaluations.parquet, front.parquet, summary.json and the plots.

    Args:
        results_dir: the experiment's results directory.
        config: the resolved config.
        rows: every evaluation row of every run.
        extra_summary: fields added to summary.json (wall time, evaluator, feature set...).

    Returns:
        The summary written to summary.json.

    """
    from evoprune.coordinator.plots import plot_front, plot_hypervolume

    with_test = config.fitness_split == "validation"
    columns = EVALUATION_COLUMNS + (TEST_COLUMNS if with_test else ())
    ordered = sort_rows(rows)
    layout = ResultsLayout(results_dir)
    _write_parquet(layout.evaluations, rows_table(ordered, columns))

    front_rows: list[dict[str, Any]] = []
    run_summaries = []
    histories = {}
    for run in range(config.search.runs):
        run_rows = [row for row in ordered if row["run"] == run]
        front = front_of(run_rows)
        front_rows.extend({**row, "run": run} for row in front)
        histories[run] = hypervolume_history(run_rows)
        run_summaries.append(_run_summary(run, config.search.seed + run, run_rows, front))
    aggregate = front_of(ordered)
    front_rows.extend({**row, "run": AGGREGATE_RUN} for row in aggregate)
    front_columns = FRONT_COLUMNS + (TEST_COLUMNS if with_test else ())
    _write_parquet(layout.front, rows_table(front_rows, front_columns))

    summary = {
        "experiment": config.name,
        "status": "succeeded",
        "runs": run_summaries,
        "aggregate": {
            "hypervolume": hypervolume(_minimisation(aggregate)),
            "evaluations": len(ordered),
            "trained": sum(not row["cached"] for row in ordered),
            "cache_hits": sum(bool(row["cached"]) for row in ordered),
            "front_size": len(aggregate),
            "best_accuracy": max((row["accuracy"] for row in ordered), default=None),
        },
        **extra_summary,
        "versions": versions(),
    }
    write_atomic(layout.summary, json.dumps(summary, indent=2))
    plot_front(front_rows, layout.front_plot, title=f"{config.name}: Pareto fronts")
    plot_hypervolume(histories, layout.hypervolume_plot, title=f"{config.name}: hypervolume")
    return summary


def _run_summary(run: int, seed: int, rows: list[dict[str, Any]], front: list[dict[str, Any]]) -> dict:
    return {
        "run": run,
        "seed": seed,
        "hypervolume": hypervolume(_minimisation(front)),
        "evaluations": len(rows),
        "trained": sum(not row["cached"] for row in rows),
        "cache_hits": sum(bool(row["cached"]) for row in rows),
        "front_size": len(front),
        "best_accuracy": max((row["accuracy"] for row in rows), default=None),
    }


def _write_parquet(path: Path, table: pa.Table) -> None:
    with atomic_file(path) as handle:
        pq.write_table(table, handle)


def read_evaluations(results_dir: Path) -> list[dict[str, Any]]:
    """Read the rows of evaluations.parquet as dicts (for tests and analyses).

    Args:
        results_dir: a results directory.

    Returns:
        One mapping per row.

    """
    return pq.read_table(ResultsLayout(results_dir).evaluations).to_pylist()
