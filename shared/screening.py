"""Multi-fidelity screening: which masks a short training budget shows to be hopeless, and what to ask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoprune.shared.config import ScreeningConfig, TrainingConfig
from evoprune.shared.pareto import hypervolume, pareto_mask, ranks


def screening_epochs(screening: ScreeningConfig, training: TrainingConfig) -> int | None:
    """The epoch at which screened masks are judged, or None when screening cannot save anything.

    Args:
        screening: the search's screening settings.
        training: the protocol (its max_epochs).

    Returns:
        round(budget × max_epochs), at least 1; None when screening is off or the budget reaches max_epochs.

    """
    if not screening.enabled:
        return None
    epochs = max(1, round(screening.budget * training.max_epochs))
    return epochs if epochs < training.max_epochs else None


@dataclass(frozen=True)
class ScreeningRule:
    """The rule applied at the budget: NSGA-II's own ranking, on low-fidelity objectives on both sides.

    A candidate's low-fidelity minimisation vector, made `margin` more optimistic in accuracy and AUROC (the
    active fraction is exact at any fidelity), joins its reference set (the low-fidelity vectors of the
    population it was bred from); non-dominated sorting gives it a 0-based rank, and beyond `max_rank` it is
    hopeless. With `min_gain` > 0 a mask that ranks well enough must also add at least that fraction to the
    hypervolume (reference point (1, 1, 1)) of the set's non-dominated front: the measure the search is
    judged by, so a mask that only fills a gap between two close points can be let go. Comparing fidelity
    with fidelity keeps the rule free of any model of how much training adds.
    """

    max_rank: int = 0
    margin: float = 0.0
    min_gain: float = 0.0

    @classmethod
    def of(cls, screening: ScreeningConfig) -> ScreeningRule:
        """The rule a config asks for."""
        return cls(max_rank=screening.max_rank, margin=screening.margin, min_gain=screening.min_gain)

    def hopeless(self, candidate: np.ndarray, reference: np.ndarray) -> bool:
        """Whether a mask stops at the screening budget.

        Args:
            candidate: its (3,) low-fidelity minimisation vector (1 - accuracy, active, 1 - AUROC).
            reference: (n, 3) low-fidelity minimisation vectors of its parents' population.

        Returns:
            True when its rank among reference ∪ {candidate} is greater than `max_rank`, or when it would
            add less than `min_gain` × the hypervolume of the reference's front to that hypervolume.

        """
        reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
        if len(reference) == 0:
            return False
        optimistic = np.asarray(candidate, dtype=np.float64).copy()
        optimistic[[0, 2]] -= self.margin
        rank = ranks(np.vstack([reference, optimistic]))[-1]
        if rank > self.max_rank:
            return True
        if self.min_gain <= 0.0:
            return False
        front = reference[pareto_mask(reference)]
        before = hypervolume(front)
        gain = hypervolume(np.vstack([front, optimistic])) - before
        return bool(gain < self.min_gain * before)


@dataclass(frozen=True)
class ScreeningRequest:
    """What an evaluator needs to screen a batch: the budget, the rule, and each mask's reference set.

    `assignment[i]` is the index in `references` of mask i's reference set, or -1 for a mask that trains to
    the full protocol unscreened (an initial population has no parents to be judged against).
    """

    epochs: int
    rule: ScreeningRule
    references: tuple[np.ndarray, ...]
    assignment: np.ndarray

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("the screening budget must be at least one epoch")
        assignment = np.asarray(self.assignment, dtype=np.int64)
        if assignment.ndim != 1 or np.any(assignment >= len(self.references)) or np.any(assignment < -1):
            raise ValueError("every assignment must be -1 or the index of a reference set")
        object.__setattr__(self, "assignment", assignment)

    @property
    def screened(self) -> np.ndarray:
        """(P,) bools: which masks are judged at the budget."""
        return self.assignment >= 0

    def hopeless(self, mask: int, candidate: np.ndarray) -> bool:
        """Whether mask `mask` of the batch, with this low-fidelity vector, stops at the budget."""
        group = int(self.assignment[mask])
        return group >= 0 and self.rule.hopeless(candidate, self.references[group])

    def sliced(self, start: int, stop: int) -> ScreeningRequest:
        """The request for masks start..stop-1 of the batch (a dispatcher's chunk)."""
        return ScreeningRequest(self.epochs, self.rule, self.references, self.assignment[start:stop])
