"""The in-memory feature set an evaluator trains on: folds of train/evaluation/test features plus OoD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Features and integer labels of one split."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"features must be 2-D (samples, dims), got shape {self.features.shape}")
        if self.labels.shape != (self.features.shape[0],):
            raise ValueError(
                f"labels must have one entry per sample: {self.labels.shape} vs {self.features.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class Fold:
    """One train/evaluate round; ordinary datasets have one, k-fold datasets have k.

    `evaluation` is the fitness split (test or validation); `test` is set only when the fitness split is
    validation, so that final fronts can be re-scored on test. `ood` holds as many OoD samples as
    `evaluation` has in-distribution samples.
    """

    train: Split
    evaluation: Split
    ood: np.ndarray  # (M, D) float32
    test: Split | None = None
    test_ood: np.ndarray | None = None


@dataclass(frozen=True)
class FeatureSet:
    """Everything a fitness evaluation reads, addressed by content."""

    key: str
    num_classes: int
    folds: tuple[Fold, ...]

    @property
    def input_dim(self) -> int:
        """Features per sample."""
        return int(self.folds[0].train.features.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by all arrays."""
        total = 0
        for fold in self.folds:
            total += fold.train.features.nbytes + fold.evaluation.features.nbytes + fold.ood.nbytes
            if fold.test is not None:
                total += fold.test.features.nbytes
            if fold.test_ood is not None:
                total += fold.test_ood.nbytes
        return total
