"""Rows of the analysis tables (importance.parquet, ensembles.parquet) as they are built, written, drawn."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ImportanceRow(TypedDict):
    """One row of importance.parquet: a mask bit, how often the front uses it, its users' objectives."""

    bit: int
    segment: int
    position: int
    unit: int
    label: str
    count: int
    frequency: float
    rank: int | None  # None outside the top bits
    mean_accuracy: float | None  # the means and best: None for a bit no member uses
    mean_active_fraction: float | None
    mean_auroc: float | None
    best_accuracy: float | None


class EnsembleRow(TypedDict):
    """One row of ensembles.parquet: a window's ensemble (the test columns with fitness_split validation)."""

    window_lower: int
    window_upper: int
    accuracy_low: float
    accuracy_high: float
    members: int
    member_masks: list[str]
    member_accuracies: list[float]
    member_aurocs: list[float]
    accuracy: float | None  # None for an empty window, as are the other scores
    auroc: float | None
    softmax_accuracy: float | None  # what `evoprune export --ensemble LOWER-UPPER` (mean softmax) reproduces
    best_mask: str | None
    best_accuracy: float | None
    best_auroc: float | None
    test_accuracy: NotRequired[float | None]
    test_auroc: NotRequired[float | None]
    test_softmax_accuracy: NotRequired[float | None]
    best_test_accuracy: NotRequired[float | None]
    best_test_auroc: NotRequired[float | None]
