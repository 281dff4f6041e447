"""One mask's evaluation result and the minimisation vector the search uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """Objectives of one mask, plus what it cost.

    accuracy and auroc are on the fitness split (averaged over folds); test_* are set when the fitness
    split is validation, so that fronts can be re-scored on test.
    """

    accuracy: float
    active_fraction: float
    auroc: float
    test_accuracy: float | None = None
    test_auroc: float | None = None
    epochs: float = 0.0
    seconds: float = 0.0
    worker: str = ""

    def minimisation(self) -> tuple[float, float, float]:
        """(1 - accuracy, active_fraction, 1 - auroc): the space NSGA-II and hypervolume work in."""
        return (1.0 - self.accuracy, self.active_fraction, 1.0 - self.auroc)

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def minimisation_matrix(evaluations: list[Evaluation]) -> np.ndarray:
    """Stacks evaluations as an (n, 3) array of minimisation objectives."""
    return np.array([evaluation.minimisation() for evaluation in evaluations], dtype=np.float64).reshape(
        -1, 3
    )
