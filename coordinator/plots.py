"""PNG plots of an experiment: the 3-D Pareto fronts with their 2-D projections, hypervolume over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, safe in workers and CI

import matplotlib.pyplot as plt

AXES = (("accuracy", "accuracy"), ("active_fraction", "active fraction"), ("auroc", "AUROC"))
PROJECTIONS = ((1, 0), (1, 2), (0, 2))


def plot_front(front_rows: list[dict[str, Any]], path: Path, title: str = "Pareto front") -> None:
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
    for run in runs:
        members = [row for row in front_rows if row["run"] == run]
        values = [[row[name] for row in members] for name, _ in AXES]
        style: dict[str, Any] = (
            {"color": "black", "s": 30, "label": "all runs", "zorder": 3}
            if run == -1
            else {"alpha": 0.45, "s": 14, "label": f"run {run}"}
        )
        axes_3d.scatter(values[0], values[1], values[2], **style)
        for axes, (x, y) in zip(flat_axes, PROJECTIONS, strict=True):
            axes.scatter(values[x], values[y], **style)
    axes_3d.set_xlabel(AXES[0][1])
    axes_3d.set_ylabel(AXES[1][1])
    axes_3d.set_zlabel(AXES[2][1])
    for axes, (x, y) in zip(flat_axes, PROJECTIONS, strict=True):
        axes.set_xlabel(AXES[x][1])
        axes.set_ylabel(AXES[y][1])
        axes.grid(alpha=0.3)
    if len(runs) <= 12:
        flat_axes[0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_hypervolume(
    histories: dict[int, list[tuple[int, float]]], path: Path, title: str = "Hypervolume"
) -> None:
    """Draws each run's hypervolume against the evaluations it used.

    Args:
        histories: run → [(evaluations, hypervolume)].
        path: the PNG to write.
        title: the figure title.

    """
    figure, axes = plt.subplots(figsize=(8, 5))
    for run, history in sorted(histories.items()):
        if history:
            evaluations, volumes = zip(*history, strict=True)
            axes.plot(evaluations, volumes, label=f"run {run}", linewidth=1.2)
    axes.set_xlabel("evaluations")
    axes.set_ylabel("hypervolume (reference 1, 1, 1)")
    axes.grid(alpha=0.3)
    if 0 < len(histories) <= 12:
        axes.legend(fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
