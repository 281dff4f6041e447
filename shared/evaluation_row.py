"""One row of an experiment's evaluations: as journaled, written to Parquet, and announced as an event."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from evoprune.shared.events import EvaluationFinished
from evoprune.shared.objectives import Evaluation, Objectives, minimisation_of


class EvaluationRowRecord(TypedDict, total=False):
    """An `EvaluationRow` as the journal keeps it (`to_dict`) and evaluations.parquet holds it: its fields.

    Rows read back from Parquet have no `key` (and `slot` only where a reader numbers them); older files
    lack the cost and screening columns, and older journals the screening fields.
    """

    run: int
    step: int
    slot: int
    key: str
    mask: str
    mask_length: int
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str
    test_accuracy: float | None
    test_auroc: float | None
    epochs: float | None
    fidelity: float | None
    screen_accuracy: float | None
    screen_auroc: float | None
    screen_epochs: int | None


@dataclass(frozen=True)
class EvaluationRow:
    """One mask of one run's step, with its objectives and what it cost (nothing for a cache hit)."""

    run: int
    step: int
    slot: int
    key: str
    mask: str
    mask_length: int
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str
    test_accuracy: float | None = None
    test_auroc: float | None = None
    epochs: float | None = None  # mean over folds of the epochs it trained (as computed; also for a hit)
    fidelity: float = 1.0  # < 1: screened out after that fraction of max_epochs (search.screening)
    screen_accuracy: float | None = None
    screen_auroc: float | None = None
    screen_epochs: int | None = None

    @property
    def full_fidelity(self) -> bool:
        """Whether the row holds the full protocol's objectives (fronts are made of these only)."""
        return self.fidelity >= 1.0

    @property
    def objectives(self) -> Objectives:
        """(accuracy, active_fraction, auroc)."""
        return (self.accuracy, self.active_fraction, self.auroc)

    def minimisation(self) -> tuple[float, float, float]:
        """(1 - accuracy, active_fraction, 1 - auroc): the space fronts and hypervolume work in."""
        return minimisation_of(self.objectives)

    def evaluation(self) -> Evaluation:
        """The mask's evaluation, as the fitness cache and the search know it."""
        return Evaluation(
            accuracy=self.accuracy,
            active_fraction=self.active_fraction,
            auroc=self.auroc,
            test_accuracy=self.test_accuracy,
            test_auroc=self.test_auroc,
            epochs=self.epochs or 0.0,
            seconds=self.seconds,
            worker=self.worker,
            fidelity=self.fidelity,
            screen_accuracy=self.screen_accuracy,
            screen_auroc=self.screen_auroc,
            screen_epochs=self.screen_epochs,
        )

    def event(self) -> EvaluationFinished:
        """The event that announces this row."""
        return EvaluationFinished(
            run=self.run,
            step=self.step,
            mask=self.mask,
            objectives=self.objectives,
            cached=self.cached,
            seconds=self.seconds,
            worker=self.worker,
            fidelity=self.fidelity,
        )

    def to_dict(self) -> EvaluationRowRecord:
        """The JSON-ready form kept in the journal (and turned into evaluations.parquet)."""
        # the record's keys are the dataclass's fields (a test holds the two lists equal)
        return cast(EvaluationRowRecord, dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: EvaluationRowRecord) -> EvaluationRow:
        """Read a row back from its `to_dict` form.

        Args:
            data: a journal line.

        Returns:
            The row.

        """
        known = {item.name for item in dataclasses.fields(cls)}
        # the journal holds what `to_dict` wrote: each value is the field's own, passed back as it is
        values: dict[str, Any] = {name: value for name, value in data.items() if name in known}
        return cls(**values)
