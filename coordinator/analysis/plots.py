"""PNG figures of the analyses: neuron importance, heatmap grids and the ensembles' boxplots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evoprune.coordinator.analysis.rows import EnsembleRow, ImportanceRow
from evoprune.coordinator.results.plots import DPI, plt

HEATMAP_ALPHA = 0.5
HEATMAP_CELL_INCHES = 1.6
TABLE_DIGITS = 4


def plot_importance(rows: list[ImportanceRow], path: Path, title: str) -> None:
    """Bar plot of the top bits' frequency over the aggregated front, with their solutions' objectives.

    Args:
        rows: the top bits, most important first: `label`, `frequency`, `count`, `mean_accuracy`,
            `mean_active_fraction`, `mean_auroc`, `best_accuracy`.
        path: the PNG to write.
        title: the figure title.

    """
    figure, (bars, table) = plt.subplots(
        2, 1, figsize=(10, 8.5), gridspec_kw={"height_ratios": [3, 2]}, layout="constrained"
    )
    labels = [row["label"] for row in rows]
    frequencies = [row["frequency"] for row in rows]
    drawn = bars.bar(
        range(len(rows)), frequencies, color=plt.get_cmap("viridis")(np.linspace(0.2, 0.8, len(rows)))
    )
    bars.bar_label(drawn, labels=[f"{value:.2f}" for value in frequencies], fontsize="small")
    bars.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    bars.set_ylabel("frequency in the aggregated front")
    bars.set_ylim(0, 1.08)
    bars.grid(axis="y", alpha=0.3)
    bars.set_title(title)
    table.axis("off")
    header = ["bit", "solutions", "mean accuracy", "mean active", "mean AUROC", "best accuracy"]
    cells = [
        [
            row["label"],
            str(row["count"]),
            *(
                _number(row[name])
                for name in ("mean_accuracy", "mean_active_fraction", "mean_auroc", "best_accuracy")
            ),
        ]
        for row in rows
    ]
    if cells:
        drawn_table = table.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
        drawn_table.auto_set_font_size(False)
        drawn_table.set_fontsize(9)
        drawn_table.scale(1.0, 1.25)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_heatmap_grid(
    images: np.ndarray,
    maps: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    path: Path,
    title: str,
    pixel_max: float,
) -> None:
    """Grid of heatmaps over sample images: rows are images, columns neurons (as in the paper's figure).

    Args:
        images: (n, H, W, C) images, values in [0, pixel_max].
        maps: (n, K, H, W) heatmaps in [0, 1].
        row_labels: one per image (its class).
        column_labels: one per neuron.
        path: the PNG to write.
        title: the figure title.
        pixel_max: the images' brightest value.

    """
    count, targets = maps.shape[:2]
    figure, axes = plt.subplots(
        count,
        targets + 1,
        figsize=(HEATMAP_CELL_INCHES * (targets + 1), HEATMAP_CELL_INCHES * count + 0.8),
        squeeze=False,
        layout="constrained",
    )
    for row in range(count):
        picture = _displayable(images[row], pixel_max)
        axes[row, 0].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axes[row, 0].set_ylabel(row_labels[row], fontsize="small")
        for column in range(targets):
            cell = axes[row, column + 1]
            cell.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            cell.imshow(maps[row, column], cmap="jet", alpha=HEATMAP_ALPHA, vmin=0.0, vmax=1.0)
            if row == 0:
                cell.set_title(column_labels[column], fontsize="small")
    axes[0, 0].set_title("image", fontsize="small")
    for cell in axes.flat:
        cell.set_xticks([])
        cell.set_yticks([])
    figure.suptitle(title)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_pixel_importance(
    frequency_map: np.ndarray,
    images: np.ndarray,
    top_pixels: Sequence[tuple[int, int]],
    row_labels: Sequence[str],
    path: Path,
    title: str,
    pixel_max: float,
) -> None:
    """The per-pixel frequency map, and the top pixels marked on sample images (rows images, columns pixels).

    Args:
        frequency_map: (H, W) frequency of every pixel in the aggregated front.
        images: (n, H, W, C) sample images in [0, pixel_max].
        top_pixels: (row, column) of the most important pixels, most important first.
        row_labels: one per image.
        path: the PNG to write.
        title: the figure title.
        pixel_max: the images' brightest value.

    """
    count = len(images)
    columns = len(top_pixels) + 1
    figure, axes = plt.subplots(
        count + 1,
        columns,
        figsize=(HEATMAP_CELL_INCHES * columns, HEATMAP_CELL_INCHES * (count + 1) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    shown = axes[0, 0].imshow(frequency_map, cmap="viridis", vmin=0.0, vmax=1.0)
    axes[0, 0].set_title("frequency", fontsize="small")
    for rank, (y, x) in enumerate(top_pixels, start=1):
        axes[0, 0].text(x, y, str(rank), color="white", ha="center", va="center", fontsize=7)
    for column in range(1, columns):
        axes[0, column].axis("off")
    if columns > 1:
        # the colour bar sits in the empty cell beside the map, so every column keeps the same width
        figure.colorbar(shown, cax=axes[0, 1].inset_axes((0.0, 0.05, 0.1, 0.9)))
    for row in range(count):
        picture = _displayable(images[row], pixel_max)
        cmap = "gray" if picture.ndim == 2 else None
        axes[row + 1, 0].imshow(picture, cmap=cmap)
        axes[row + 1, 0].imshow(frequency_map, cmap="jet", alpha=HEATMAP_ALPHA, vmin=0.0, vmax=1.0)
        axes[row + 1, 0].set_ylabel(row_labels[row], fontsize="small")
        for column, (y, x) in enumerate(top_pixels, start=1):
            cell = axes[row + 1, column]
            cell.imshow(picture, cmap=cmap)
            cell.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
            if row == 0:
                cell.set_title(f"#{column} pixel ({y}, {x})", fontsize="small")
    for cell in axes.flat:
        cell.set_xticks([])
        cell.set_yticks([])
    figure.suptitle(title)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_ensembles(rows: list[EnsembleRow], path: Path, title: str) -> None:
    """Boxplots of the members' accuracy and AUROC per percentile window, the ensemble and best member marked.

    Args:
        rows: rows of ensembles.parquet (`window_lower`, `window_upper`, `member_accuracies`,
            `member_aurocs`, `accuracy`, `auroc`, `best_accuracy`, `best_auroc`).
        path: the PNG to write.
        title: the figure title.

    """
    figure, panels = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    labels = [f"({row['window_lower']}, {row['window_upper']})" for row in rows]
    # per panel: its metric's name, every window's member scores, the ensemble's and the best member's
    metrics = (
        (
            "accuracy",
            [row["member_accuracies"] for row in rows],
            [row["accuracy"] for row in rows],
            [row["best_accuracy"] for row in rows],
        ),
        (
            "AUROC",
            [row["member_aurocs"] for row in rows],
            [row["auroc"] for row in rows],
            [row["best_auroc"] for row in rows],
        ),
    )
    for panel, (name, members, ensemble, best) in zip(panels, metrics, strict=True):
        positions = [index for index, scores in enumerate(members) if scores]
        panel.boxplot(
            [members[index] for index in positions],
            positions=positions,
            widths=0.6,
            patch_artist=True,
            boxprops={"facecolor": "#cfe2f3"},
            medianprops={"color": "#1f4e79"},
        )
        panel.scatter(
            positions,
            [ensemble[index] for index in positions],
            marker="*",
            s=160,
            color="crimson",
            zorder=3,
            label="majority-vote ensemble" if name == "accuracy" else "ensemble (mean ODIN score)",
        )
        panel.scatter(
            positions,
            [best[index] for index in positions],
            marker="x",
            s=60,
            color="black",
            zorder=3,
            label="best single member",
        )
        panel.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
        panel.set_xlim(-0.6, len(rows) - 0.4)
        panel.set_xlabel("percentile window of the aggregated front's accuracy")
        panel.set_ylabel(name)
        panel.grid(axis="y", alpha=0.3)
        panel.legend(fontsize="small", loc="lower right")
    figure.suptitle(title)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.{TABLE_DIGITS}f}"


def _displayable(image: np.ndarray, pixel_max: float) -> np.ndarray:
    scaled = np.clip(np.asarray(image, dtype=np.float32) / pixel_max, 0.0, 1.0)
    return scaled[..., 0] if scaled.shape[-1] == 1 else scaled[..., :3]
