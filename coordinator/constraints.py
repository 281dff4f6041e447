"""The search's constraints (`search.constraints`): each mask's normalised violations and its feasibility."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evoprune.shared.config import ConstraintsConfig, ExperimentConfig

if TYPE_CHECKING:
    from evoprune.workers.evaluation.head_layout import HeadShape
    from evoprune.workers.export.model import HeadCost


class ConstraintsError(ValueError):
    """Constraints that cannot be checked as configured (a head budget without the head's layout)."""


@dataclass(frozen=True)
class HeadBudgetLayout:
    """What a head budget is checked against: the resolved head and the unpruned head's cost."""

    shape: HeadShape
    full: HeadCost

    @classmethod
    def of(cls, shape: HeadShape) -> HeadBudgetLayout:
        """The layout of a resolved head shape (`workers.evaluation.head_layout.head_shape`)."""
        from evoprune.workers.export.model import head_cost

        return cls(shape, head_cost((*shape.widths, shape.num_classes), shape.hidden_bias))

    def cost(self, mask: np.ndarray) -> HeadCost:
        """The pruned head's parameters and FLOPs per image, counted as `evoprune export` counts them.

        Args:
            mask: one mask of the head's length (bools).

        Returns:
            The cost of the head with only the kept inputs and units.

        """
        from evoprune.workers.evaluation.head_layout import active_indices
        from evoprune.workers.export.model import head_cost, pruned_widths

        kept = active_indices(self.shape, np.asarray(mask, dtype=bool))
        return head_cost(pruned_widths(self.shape, kept), self.shape.hidden_bias)


class Constraints:
    """Checks masks against a search's constraints.

    Each violation is how far a mask lies beyond its bound, as a fraction of the quantity's full range so
    that violations of different kinds add up: a fraction's (active fraction, accuracy, AUROC) as it is, a
    head budget's divided by the unpruned head's count. A mask is feasible when the sum is 0.
    """

    def __init__(self, limits: ConstraintsConfig, head: HeadBudgetLayout | None = None) -> None:
        """Check masks against `limits`.

        Args:
            limits: the configured bounds.
            head: the head's layout; needed when a parameter or FLOP budget is set.

        Raises:
            ConstraintsError: a head budget is set and `head` is None.

        """
        if limits.on_head_size and head is None:
            raise ConstraintsError(
                "search.constraints: a head budget (max_head_parameters / max_head_flops) needs the head's "
                "layout, which is known once the features are loaded"
            )
        self.limits = limits
        self.head = head

    @classmethod
    def of(cls, config: ExperimentConfig, input_dim: int, num_classes: int) -> Constraints | None:
        """The constraints of an experiment on features of this shape; None when it sets none.

        Args:
            config: the experiment.
            input_dim: features per sample.
            num_classes: classes of the dataset.

        Returns:
            The constraints, or None.

        """
        limits = config.search.constraints
        if not limits.active:
            return None
        head = None
        if limits.on_head_size:
            from evoprune.workers.evaluation.head_layout import head_shape

            head = HeadBudgetLayout.of(head_shape(config.head, input_dim, num_classes))
        return cls(limits, head)

    @property
    def names(self) -> tuple[str, ...]:
        """The set constraints, in the column order of `violations`."""
        fields = type(self.limits).model_fields
        return tuple(name for name in fields if getattr(self.limits, name) is not None)

    def violations(self, masks: np.ndarray, objectives: np.ndarray) -> np.ndarray:
        """Each mask's normalised violation of each set constraint.

        Args:
            masks: (n, L) bools.
            objectives: (n, 3) minimisation objectives (1 - accuracy, active fraction, 1 - AUROC).

        Returns:
            (n, len(names)) violations >= 0, 0 where a constraint holds.

        """
        points = np.asarray(objectives, dtype=np.float64).reshape(-1, 3)
        masks = np.asarray(masks, dtype=bool).reshape(len(points), -1)
        limits = self.limits
        columns = []
        if limits.max_active_fraction is not None:
            columns.append(points[:, 1] - limits.max_active_fraction)
        if limits.min_accuracy is not None:
            columns.append(limits.min_accuracy - (1.0 - points[:, 0]))
        if limits.min_auroc is not None:
            columns.append(limits.min_auroc - (1.0 - points[:, 2]))
        if limits.on_head_size:
            assert self.head is not None
            costs = [self.head.cost(mask) for mask in masks]
            if limits.max_head_parameters is not None:
                used = np.array([cost.parameters for cost in costs], dtype=np.float64)
                columns.append((used - limits.max_head_parameters) / self.head.full.parameters)
            if limits.max_head_flops is not None:
                used = np.array([cost.flops for cost in costs], dtype=np.float64)
                columns.append((used - limits.max_head_flops) / self.head.full.flops)
        if not columns:
            return np.zeros((len(points), 0), dtype=np.float64)
        return np.maximum(np.stack(columns, axis=1), 0.0)

    def total_violation(self, masks: np.ndarray, objectives: np.ndarray) -> np.ndarray:
        """The sum of each mask's normalised violations: what constrained domination compares.

        Args:
            masks: (n, L) bools.
            objectives: (n, 3) minimisation objectives.

        Returns:
            (n,) totals, 0 for feasible masks.

        """
        return self.violations(masks, objectives).sum(axis=1)

    def feasible(self, masks: np.ndarray, objectives: np.ndarray) -> np.ndarray:
        """Whether each mask keeps to every constraint.

        Args:
            masks: (n, L) bools.
            objectives: (n, 3) minimisation objectives.

        Returns:
            (n,) bools.

        """
        return self.total_violation(masks, objectives) == 0.0
