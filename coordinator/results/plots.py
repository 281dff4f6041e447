"""PNG plots of an experiment: the 3-D Pareto fronts with their 2-D projections, hypervolume over time."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, safe in workers and CI

import matplotlib.pyplot as plt

from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.shared.atomic_files import atomic_file
from evoprune.shared.storage import StoragePath

# front rows as plotted: `FrontRow`s, or front.parquet records as the analyses read them
FrontRecords = Sequence[Mapping[str, Any]]
AXES = (("accuracy", "accuracy"), ("active_fraction", "active fraction"), ("auroc", "AUROC"))
PROJECTIONS = ((1, 0), (1, 2), (0, 2))
LEGEND_MAX_RUNS = 12
DPI = 90


class ScatterStyle(TypedDict, total=False):
    """The keyword arguments of matplotlib's `scatter` that tell one run's front from another's."""

    color: str | tuple[float, float, float, float]  # a name, or an RGBA colour of a palette
    alpha: float
    s: float  # marker area, points²
    label: str
    zorder: int


def run_colour(run: int) -> str | tuple[float, float, float, float]:
    """One colour per run (tab10, then tab20 beyond ten runs); the aggregated front is black."""
    if run == AGGREGATE_RUN:
        return "black"
    palette = plt.get_cmap("tab10" if run < 10 else "tab20")
    return palette(run % palette.N)


def run_style(run: int, runs: int) -> ScatterStyle:
    """Scatter style of a run's front: faint and coloured per run; the aggregated front bold and on top."""
    if run == AGGREGATE_RUN:
        return {"color": "black", "s": 30, "label": "all runs (aggregated)", "zorder": 3}
    return {"color": run_colour(run), "alpha": 0.45 if runs > 2 else 0.6, "s": 14, "label": f"run {run}"}


def _run_values(front_rows: FrontRecords, run: int) -> list[list[float]]:
    """The run's members as one list per objective, in AXES order."""
    members = [row for row in front_rows if row["run"] == run]
    return [[row[name] for row in members] for name, _ in AXES]


def _draw_3d(axes: Any, front_rows: FrontRecords, runs: list[int]) -> None:
    for run in runs:
        values = _run_values(front_rows, run)
        axes.scatter(values[0], values[1], values[2], **run_style(run, len(runs)))
    axes.set_xlabel(AXES[0][1])
    axes.set_ylabel(AXES[1][1])
    axes.set_zlabel(AXES[2][1])


def _draw_projections(flat_axes: Any, front_rows: FrontRecords, runs: list[int]) -> None:
    for run in runs:
        values = _run_values(front_rows, run)
        for axes, (x, y) in zip(flat_axes, PROJECTIONS, strict=True):
            axes.scatter(values[x], values[y], **run_style(run, len(runs)))
    for axes, (x, y) in zip(flat_axes, PROJECTIONS, strict=True):
        axes.set_xlabel(AXES[x][1])
        axes.set_ylabel(AXES[y][1])
        axes.grid(alpha=0.3)
    # an experiment cancelled before its first step has no front to label
    if 0 < len(runs) <= LEGEND_MAX_RUNS:
        flat_axes[0].legend(fontsize="small")


def plot_front(front_rows: FrontRecords, path: StoragePath, title: str = "Pareto front") -> None:
    """Draws every run's front (faint) and the aggregated front (run = -1, bold).

    Args:
        front_rows: rows of front.parquet.
        path: the PNG to write.
        title: the figure title.

    """
    figure = plt.figure(figsize=(12, 10))
    axes_3d = figure.add_subplot(2, 2, 1, projection="3d")
    flat_axes = [figure.add_subplot(2, 2, index) for index in (2, 3, 4)]
    runs = sorted({row["run"] for row in front_rows})
    _draw_3d(axes_3d, front_rows, runs)
    _draw_projections(flat_axes, front_rows, runs)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_front_3d(front_rows: FrontRecords, path: StoragePath, title: str = "Pareto fronts") -> None:
    """Draws the 3-D fronts alone and large: one colour per run, the aggregated front (run = -1) in black.

    Args:
        front_rows: rows of front.parquet.
        path: the PNG to write.
        title: the figure title.

    """
    figure = plt.figure(figsize=(9, 8))
    axes = figure.add_subplot(1, 1, 1, projection="3d")
    runs = _runs_aggregate_last(front_rows)
    _draw_3d(axes, front_rows, runs)
    if 0 < len(runs) <= LEGEND_MAX_RUNS:
        axes.legend(fontsize="small", loc="upper left")
    axes.set_title(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_front_projections(
    front_rows: FrontRecords, path: StoragePath, title: str = "Pareto fronts, 2-D projections"
) -> None:
    """Draws the three 2-D projections side by side, the aggregated front drawn on top of the runs.

    Args:
        front_rows: rows of front.parquet.
        path: the PNG to write.
        title: the figure title.

    """
    figure, flat_axes = plt.subplots(1, 3, figsize=(16, 5))
    runs = _runs_aggregate_last(front_rows)
    _draw_projections(flat_axes, front_rows, runs)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def _runs_aggregate_last(front_rows: FrontRecords) -> list[int]:
    """Runs in order with the aggregated front drawn last, on top of the others."""
    runs = sorted({row["run"] for row in front_rows} - {AGGREGATE_RUN})
    return runs + [AGGREGATE_RUN] * any(row["run"] == AGGREGATE_RUN for row in front_rows)


def plot_hypervolume(
    histories: dict[int, list[tuple[int, float]]],
    path: StoragePath,
    title: str = "Hypervolume",
    aggregate: list[tuple[float, float]] | None = None,
) -> None:
    """Draws each run's hypervolume against the evaluations it used.

    Args:
        histories: run → [(evaluations, hypervolume)].
        path: the PNG to write.
        title: the figure title.
        aggregate: the aggregated front's [(evaluations per run, hypervolume)], drawn bold in black.

    """
    figure, axes = plt.subplots(figsize=(8, 5))
    for run, history in sorted(histories.items()):
        if history:
            evaluations, volumes = zip(*history, strict=True)
            axes.plot(evaluations, volumes, label=f"run {run}", linewidth=1.2, color=run_colour(run))
    if aggregate:
        evaluations, volumes = zip(*aggregate, strict=True)
        axes.plot(evaluations, volumes, label="all runs (aggregated)", linewidth=2.2, color="black")
    axes.set_xlabel("evaluations per run" if aggregate else "evaluations")
    axes.set_ylabel("hypervolume (reference 1, 1, 1)")
    axes.grid(alpha=0.3)
    if 0 < len(histories) <= LEGEND_MAX_RUNS and axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def _save(figure: Any, path: StoragePath) -> None:
    # rendered in memory and written in one piece: a reader never sees half a PNG, on disk or in a bucket
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    with atomic_file(path, durable=False) as handle:
        handle.write(buffer.getvalue())
