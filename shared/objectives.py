"""One mask's evaluation result and the minimisation vector the search uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Objectives = tuple[float, float, float]
"""(accuracy, active_fraction, auroc): how results are stored and shown."""


def minimisation_of(objectives: Objectives) -> tuple[float, float, float]:
    """(1 - accuracy, active_fraction, 1 - auroc): the space NSGA-II and hypervolume work in.

    Args:
        objectives: (accuracy, active_fraction, auroc).

    Returns:
        The minimisation vector.

    """
    accuracy, active_fraction, auroc = objectives
    return (1.0 - accuracy, active_fraction, 1.0 - auroc)


def objectives_of(minimisation: tuple[float, ...] | list[float]) -> Objectives:
    """The inverse of `minimisation_of`.

    Args:
        minimisation: (1 - accuracy, active_fraction, 1 - auroc).

    Returns:
        (accuracy, active_fraction, auroc).

    """
    return (1.0 - minimisation[0], minimisation[1], 1.0 - minimisation[2])


@dataclass(frozen=True)
class Evaluation:
    """Objectives of one mask, plus what it cost.

    accuracy and auroc are on the fitness split (averaged over folds); test_* are set when the fitness
    split is validation, so that fronts can be re-scored on test. Under screening (search.screening),
    `fidelity` < 1 marks a mask stopped after that fraction of max_epochs as hopeless: its objectives are
    the short budget's, never the full protocol's; screen_* are the objectives at the screening budget of
    every mask that was screened (they rank later masks against it).
    """

    accuracy: float
    active_fraction: float
    auroc: float
    test_accuracy: float | None = None
    test_auroc: float | None = None
    epochs: float = 0.0
    seconds: float = 0.0
    worker: str = ""
    fidelity: float = 1.0
    screen_accuracy: float | None = None
    screen_auroc: float | None = None
    screen_epochs: int | None = None

    @property
    def full_fidelity(self) -> bool:
        """Whether these are the full protocol's objectives (not a screened-out mask's short budget)."""
        return self.fidelity >= 1.0

    def minimisation(self) -> tuple[float, float, float]:
        """(1 - accuracy, active_fraction, 1 - auroc): the space NSGA-II and hypervolume work in."""
        return minimisation_of((self.accuracy, self.active_fraction, self.auroc))

    def screening_minimisation(self, epochs: int) -> tuple[float, float, float]:
        """The minimisation vector at a screening budget of `epochs`; the final one where none was taken.

        A mask that stopped early before the budget, or whose snapshot was taken at another budget (a cache
        filled by another experiment), has none of its own; its final objectives stand in (for a mask that
        stopped they are exactly its budget's).

        Args:
            epochs: the screening budget the vector is wanted at.

        Returns:
            (1 - accuracy, active_fraction, 1 - auroc) at that budget.

        """
        if self.screen_epochs != epochs or self.screen_accuracy is None or self.screen_auroc is None:
            return self.minimisation()
        return minimisation_of((self.screen_accuracy, self.active_fraction, self.screen_auroc))

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, float | str | None]) -> Evaluation:
        """Read an evaluation back from its `to_dict` form (a fitness cache's entry).

        Args:
            data: the entry; keys it lacks take their defaults, keys the class lacks are passed over.

        Returns:
            The evaluation.

        """
        # the entry holds what `to_dict` wrote: each value is the field's own, passed back as it is
        values: dict[str, Any] = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**values)


def minimisation_matrix(evaluations: list[Evaluation]) -> np.ndarray:
    """Stacks evaluations as an (n, 3) array of minimisation objectives."""
    return np.array([evaluation.minimisation() for evaluation in evaluations], dtype=np.float64).reshape(
        -1, 3
    )
