"""Writing a results directory: config.yaml, evaluations.parquet, front.parquet, summary.json and plots."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, cast

import numpy as np
import pyarrow as pa

from evoprune.coordinator.results.fronts import AGGREGATE_RUN, FrontKind, FrontRow
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.summary import FrontSummary, RunInfo, RunSummary, Summary
from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.evaluation_row import EvaluationRowRecord
from evoprune.shared.objectives import minimisation_of
from evoprune.shared.pareto import ParetoArchive, hypervolume, pareto_mask
from evoprune.shared.parquet_files import read_verified_parquet, write_parquet
from evoprune.shared.storage import StoragePath

if TYPE_CHECKING:
    from evoprune.coordinator.constraints import Constraints

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
# what each evaluation cost and at which fidelity (written since screening; older directories lack them)
COST_COLUMNS = ("epochs", "fidelity")
# the objectives at the screening budget, written when search.screening is on
SCREENING_COLUMNS = ("screen_accuracy", "screen_auroc", "screen_epochs")
FRONT_COLUMNS = ("run", "kind", "mask", "mask_length", "accuracy", "active_fraction", "auroc")
VERSIONED_PACKAGES = ("evoprune", "numpy", "deap", "ray", "pyarrow", "tensorflow", "keras", "jax")

COLUMN_TYPES = {
    "run": pa.int32(),
    "kind": pa.string(),
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
    "epochs": pa.float64(),
    "fidelity": pa.float64(),
    "screen_accuracy": pa.float64(),
    "screen_auroc": pa.float64(),
    "screen_epochs": pa.int32(),
    "feasible": pa.bool_(),
}
# front.parquet's column when the search has constraints
FEASIBLE_COLUMN = "feasible"


class EvaluationRecord(EvaluationRowRecord, total=False):
    """One evaluation as the journal keeps it and evaluations.parquet holds it, as the writer handles it.

    The fields are `EvaluationRowRecord`'s (`EvaluationRow.to_dict`); front rows of a constrained search
    also carry `feasible`.
    """

    feasible: bool


def sort_rows(rows: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Rows in (run, step, position in step) order: the order a single-threaded run would produce."""
    return sorted(rows, key=lambda row: (row["run"], row["step"], row["slot"]))


def rows_table(rows: Sequence[Mapping[str, object]], columns: tuple[str, ...]) -> pa.Table:
    """The rows (evaluation records or `FrontRow`s) as an Arrow table of `columns`, typed as the files are."""
    return pa.table(
        {name: pa.array([row.get(name) for row in rows], type=COLUMN_TYPES[name]) for name in columns}
    )


def _minimisation(rows: list[EvaluationRecord]) -> np.ndarray:
    return np.array(
        [minimisation_of((r["accuracy"], r["active_fraction"], r["auroc"])) for r in rows], dtype=np.float64
    ).reshape(-1, 3)


def full_fidelity(row: EvaluationRecord) -> bool:
    """Whether a row holds the full protocol's objectives (not a mask screened out at a short budget)."""
    fidelity = row.get("fidelity")
    return fidelity is None or fidelity >= 1.0


def front_of(rows: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Select the non-dominated full-fidelity rows, one per distinct mask, best accuracy first.

    Args:
        rows: evaluation rows (any runs); screened-out rows are passed over.

    Returns:
        The Pareto-optimal rows.

    """
    distinct: dict[str, EvaluationRecord] = {}
    for row in rows:
        if full_fidelity(row):
            distinct.setdefault(row["mask"], row)
    unique = list(distinct.values())
    if not unique:
        return []
    keep = pareto_mask(_minimisation(unique))
    front = [row for row, kept in zip(unique, keep, strict=True) if kept]
    return sorted(front, key=lambda r: (-r["accuracy"], r["active_fraction"], -r["auroc"], r["mask"]))


def first_of_each_objective_vector(rows: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Keep the first row of each minimisation vector, in order.

    jMetalPy's non-dominated archive (`get_non_dominated_solutions`, which gave the paper its fronts)
    refuses a solution whose objectives equal one it holds, so of masks with equal objectives the first it
    was given is the one its front shows.

    Args:
        rows: evaluation rows, in the order the archive would be given them.

    Returns:
        The rows whose objective vector no earlier row has.

    """
    seen: set[tuple[float, ...]] = set()
    kept = []
    for row, point in zip(rows, _minimisation(rows), strict=True):
        key = tuple(point.tolist())
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def population_front(
    rows: list[EvaluationRecord], population: list[str], *, distinct_objectives: bool = False
) -> list[EvaluationRecord]:
    """Select the paper's front of one run: the non-dominated members of its final population.

    Args:
        rows: the run's evaluation rows.
        population: the hex masks of the run's final population (duplicates allowed), in the search's order.
        distinct_objectives: keep one member per objective vector, the first in population order (the
            reference's front; `search.bookkeeping: jmetalpy`).

    Returns:
        The non-dominated members, one row per distinct mask (or objective vector), best accuracy first.

    Raises:
        ValueError: a population member has no evaluation row.

    """
    by_mask: dict[str, EvaluationRecord] = {}
    for row in rows:
        by_mask.setdefault(row["mask"], row)
    missing = [mask for mask in population if mask not in by_mask]
    if missing:
        raise ValueError(f"{len(missing)} population member(s) have no evaluation, e.g. {missing[0]}")
    members = [by_mask[mask] for mask in population]
    return front_of(first_of_each_objective_vector(members) if distinct_objectives else members)


def hypervolume_history(rows: list[EvaluationRecord]) -> list[tuple[int, float]]:
    """Hypervolume of a run's archive front after each of its steps.

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
        full = [row for row in members if full_fidelity(row)]
        archive.add(_minimisation(full), [row["mask"] for row in full])
        done += len(members)  # a screened-out mask used the budget even though it joins no front
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


def write_config(results_dir: StoragePath, config: ExperimentConfig) -> None:
    """Write config.yaml, the fully resolved config.

    Args:
        results_dir: the experiment's results directory.
        config: the resolved config.

    """
    write_atomic(ResultsLayout(results_dir).config, config.to_yaml())


def feasibility(rows: list[EvaluationRecord], constraints: Constraints) -> dict[str, bool]:
    """Whether each row's mask keeps to the search's constraints.

    Args:
        rows: evaluation rows (their `mask`, `mask_length` and objectives are read).
        constraints: the search's constraints.

    Returns:
        hex mask → feasible.

    """
    from evoprune.shared.masks import decode_mask

    distinct: dict[str, EvaluationRecord] = {}
    for row in rows:
        distinct.setdefault(row["mask"], row)
    if not distinct:
        return {}
    unique = list(distinct.values())
    masks = np.array([decode_mask(row["mask"], int(row["mask_length"])) for row in unique], dtype=bool)
    feasible = constraints.feasible(masks, _minimisation(unique))
    return {row["mask"]: bool(ok) for row, ok in zip(unique, feasible, strict=True)}


def _marked(
    select: Callable[[list[EvaluationRecord]], list[EvaluationRecord]],
    rows: list[EvaluationRecord],
    feasible: dict[str, bool] | None,
) -> list[EvaluationRecord]:
    """`select(rows)`, and with constraints also `select` of the feasible rows, each row marked.

    An infeasible point can dominate a feasible one only through a head budget (every other bound is
    monotone in the objectives), so the feasible rows' own front is added: a front then shows every
    feasible non-dominated mask, and the infeasible ones that bound them, told apart by `feasible`.
    """
    if feasible is None:
        return select(rows)
    merged = {row["mask"]: row for row in select(rows)}
    for row in select([row for row in rows if feasible[row["mask"]]]):
        merged.setdefault(row["mask"], row)
    marked: list[EvaluationRecord] = [{**row, "feasible": feasible[row["mask"]]} for row in merged.values()]
    return sorted(marked, key=lambda r: (-r["accuracy"], r["active_fraction"], -r["auroc"], r["mask"]))


def write_results(
    results_dir: StoragePath,
    config: ExperimentConfig,
    rows: list[EvaluationRecord],
    info: RunInfo,
    populations: dict[int, list[str]],
    constraints: Constraints | None = None,
) -> Summary:
    """Write evaluations.parquet, front.parquet, summary.json and the plots.

    front.parquet holds two fronts per run and two aggregated ones (run = -1), told apart by `kind`:
    `population` (the paper's: the non-dominated members of each run's final population; aggregated, the
    non-dominated union of those, the paper's "super Pareto front") and `archive` (the non-dominated set of
    all of a run's evaluations; aggregated, of all runs' evaluations). Under `search.bookkeeping: jmetalpy`
    the population fronts hold one member per objective vector, as the reference's did.

    Args:
        results_dir: the experiment's results directory.
        config: the resolved config.
        rows: every evaluation row of every run (journal records).
        info: how the experiment ran (wall time, evaluator, feature set, status...).
        populations: run → hex masks of its final population (the population so far when cancelled).
        constraints: the search's constraints: front rows then carry `feasible`, and the summary the
            feasible evaluations and their best accuracy.

    Returns:
        The summary written to summary.json.

    """
    from evoprune.coordinator.results.plots import plot_front, plot_hypervolume

    with_test = config.fitness_split == "validation"
    screening = config.search.screening.enabled
    columns = EVALUATION_COLUMNS + (TEST_COLUMNS if with_test else ()) + COST_COLUMNS
    columns += SCREENING_COLUMNS if screening else ()
    ordered = sort_rows(rows)
    layout = ResultsLayout(results_dir)
    _write_parquet(layout.evaluations, rows_table(ordered, columns))

    distinct_objectives = config.search.bookkeeping == "jmetalpy"
    feasible = feasibility(ordered, constraints) if constraints is not None else None
    runs_rows: dict[int, list[EvaluationRecord]] = {run: [] for run in range(config.search.runs)}
    for row in ordered:
        runs_rows[row["run"]].append(row)
    population_rows: list[EvaluationRecord] = []
    front_rows: dict[FrontKind, list[FrontRow]] = {kind: [] for kind in FrontKind}
    run_summaries = []
    histories = {}
    for run, run_rows in runs_rows.items():
        population = populations.get(run, [])

        def population_front_among(chosen: list[EvaluationRecord]) -> list[EvaluationRecord]:
            # all rows: the whole population, so a member without a row is still refused
            # called at once, in this iteration: the loop variables are the ones meant
            among = {row["mask"] for row in chosen}
            whole = chosen is run_rows  # noqa: B023
            members = population if whole else [mask for mask in population if mask in among]  # noqa: B023
            return population_front(run_rows, members, distinct_objectives=distinct_objectives)  # noqa: B023

        fronts = {
            FrontKind.POPULATION: _marked(population_front_among, run_rows, feasible),
            FrontKind.ARCHIVE: _marked(front_of, run_rows, feasible),
        }
        population_rows.extend(fronts[FrontKind.POPULATION])
        for kind, front in fronts.items():
            front_rows[kind].extend(FrontRow.of(row, run=run, kind=kind) for row in front)
        histories[run] = hypervolume_history(run_rows)
        run_summaries.append(
            RunSummary(
                run=run, seed=config.search.seed + run, front=_front_summary(run_rows, fronts, feasible)
            )
        )
    aggregates = {
        # the non-dominated union of the runs' fronts of each kind (for archives: of all evaluations)
        # (of equal objective vectors in several runs, the lowest run's member, as the reference's archive)
        FrontKind.POPULATION: _marked(
            lambda chosen: front_of(
                first_of_each_objective_vector(chosen) if distinct_objectives else chosen
            ),
            population_rows,
            feasible,
        ),
        FrontKind.ARCHIVE: _marked(front_of, ordered, feasible),
    }
    every_front = [
        *front_rows[FrontKind.POPULATION],
        *(
            FrontRow.of(row, run=AGGREGATE_RUN, kind=FrontKind.POPULATION)
            for row in aggregates[FrontKind.POPULATION]
        ),
        *front_rows[FrontKind.ARCHIVE],
        *(
            FrontRow.of(row, run=AGGREGATE_RUN, kind=FrontKind.ARCHIVE)
            for row in aggregates[FrontKind.ARCHIVE]
        ),
    ]
    front_columns = FRONT_COLUMNS + (TEST_COLUMNS if with_test else ())
    front_columns += (FEASIBLE_COLUMN,) if feasible is not None else ()
    _write_parquet(layout.front, rows_table(every_front, front_columns))

    summary = Summary(
        experiment=config.name,
        status=info.status,
        runs=tuple(run_summaries),
        aggregate=_front_summary(ordered, aggregates, feasible),
        wall_time_s=info.wall_time_s,
        resumed_with_rows=info.resumed_with_rows,
        feature_set=info.feature_set,
        protocol=info.protocol,
        mask_length=info.mask_length,
        fingerprint=info.fingerprint,
        evaluator=info.evaluator,
        fitness_cache=info.fitness_cache,
        versions=versions(),
    )
    summary.write(layout.summary)
    plot_front(
        [row for row in every_front if row.kind == FrontKind.POPULATION],
        layout.front_plot,
        title=f"{config.name}: Pareto fronts of the final populations",
    )
    plot_hypervolume(
        histories, layout.hypervolume_plot, title=f"{config.name}: hypervolume of the archive fronts"
    )
    return summary


def _front_summary(
    rows: list[EvaluationRecord],
    fronts: dict[FrontKind, list[EvaluationRecord]],
    feasible: dict[str, bool] | None = None,
) -> FrontSummary:
    """Counts of `rows` and both fronts' hypervolumes and sizes (and, with constraints, the feasible)."""
    full = [row for row in rows if full_fidelity(row)]
    kept = [row for row in full if feasible[row["mask"]]] if feasible is not None else []
    return FrontSummary(
        hypervolume_population=hypervolume(_minimisation(fronts[FrontKind.POPULATION])),
        hypervolume_archive=hypervolume(_minimisation(fronts[FrontKind.ARCHIVE])),
        evaluations=len(rows),
        trained=sum(not row["cached"] for row in rows),
        screened_out=sum(not full_fidelity(row) for row in rows),
        epochs_trained=_epochs_trained(rows),
        cache_hits=sum(bool(row["cached"]) for row in rows),
        front_size_population=len(fronts[FrontKind.POPULATION]),
        front_size_archive=len(fronts[FrontKind.ARCHIVE]),
        best_accuracy=max((row["accuracy"] for row in full), default=None),
        feasible=len(kept) if feasible is not None else None,
        best_feasible_accuracy=max((row["accuracy"] for row in kept), default=None),
    )


def _epochs_trained(rows: list[EvaluationRecord]) -> float | None:
    trained = [row.get("epochs") for row in rows if not row["cached"]]
    if any(epochs is None for epochs in trained):
        return None
    return float(sum(trained))  # type: ignore[arg-type]


def _write_parquet(path: StoragePath, table: pa.Table) -> None:
    # page checksums and a whole-file digest: a damaged file is refused on reading, never read as other rows
    write_parquet(path, table)


def read_evaluations(results_dir: StoragePath) -> list[EvaluationRecord]:
    """Read the rows of evaluations.parquet as dicts (for tests and analyses).

    Args:
        results_dir: a results directory.

    Returns:
        One mapping per row.

    Raises:
        CorruptFileError: the file is damaged (the message names it).

    """
    table = read_verified_parquet(ResultsLayout(results_dir).evaluations)
    return cast(list[EvaluationRecord], table.to_pylist())  # the file's columns are the record's
