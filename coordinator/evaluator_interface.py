"""The `Evaluator` interface the search runs against, and its in-process implementation."""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Callable
from typing import Protocol, Required, TypedDict

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest
from evoprune.workers.features.feature_set import FeatureSet


class EvaluatorDescription(TypedDict, total=False):
    """What an evaluator runs on, as `describe()` gives it (summary.json's `evaluator`, the progress line)."""

    kind: Required[str]
    workers: Required[int]
    # the Ray evaluator's own
    resources_per_worker: dict[str, float]
    dashboard_url: str | None
    replaced_workers: int
    calls: int
    masks_per_call: float

class EvaluationError(RuntimeError):
    """Evaluations could not be obtained (a failing evaluator, or every retry used)."""


class MaskEvaluator(Protocol):
    """Anything that turns a (P, L) batch of masks into P evaluations (workers' BatchedEvaluator)."""

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]: ...


class Evaluator(abc.ABC):
    """Evaluates batches of masks, possibly many at once on a pool of workers.

    The asynchronous form is `submit` (returns a ticket at once) and `wait` (returns finished tickets);
    `evaluate` is the blocking form built on them. A batch's evaluations come back in the order of its masks.
    """

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._finished: dict[int, list[Evaluation]] = {}

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """How many batches can run at the same time."""

    @abc.abstractmethod
    def idle_workers(self) -> int:
        """How many workers have nothing to do right now."""

    @abc.abstractmethod
    def submit(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> int:
        """Queues a batch.

        Args:
            masks: (P, L) bools.
            screening: screen the batch at a short budget (search.screening); None trains every mask fully.

        Returns:
            A ticket that `wait` reports when the batch is done.

        """

    @abc.abstractmethod
    def _wait(self, timeout_s: float | None) -> dict[int, list[Evaluation]]:
        """Blocks until at least one ticket finishes (or the timeout); returns the finished tickets."""

    @abc.abstractmethod
    def pending(self) -> int:
        """Tickets submitted and not yet returned by `wait`."""

    def wait(self, timeout_s: float | None = None) -> dict[int, list[Evaluation]]:
        """Finished batches.

        Args:
            timeout_s: the longest to block; None blocks until one batch finishes.

        Returns:
            ticket → evaluations, for every batch finished since the last call (may be empty on timeout).

        Raises:
            EvaluationError: a batch failed beyond what the evaluator can retry.

        """
        if self._finished:
            finished, self._finished = self._finished, {}
            return finished
        return self._wait(timeout_s)

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        """Evaluate one batch and block until it is done.

        Args:
            masks: (P, L) bools.
            screening: as for `submit`.

        Returns:
            P evaluations in mask order.

        """
        ticket = self.submit(masks) if screening is None else self.submit(masks, screening)
        while True:
            finished = self.wait()
            result = finished.pop(ticket, None)
            self._finished.update(finished)  # other callers' tickets stay collectable
            if result is not None:
                return result

    def describe(self) -> EvaluatorDescription:
        """Describe what the evaluator runs on, for the progress line and summary.json."""
        return {"kind": type(self).__name__, "workers": self.workers}

    def close(self) -> None:
        """Releases workers."""
        return  # nothing to release by default

    def _next_ticket(self) -> int:
        return next(self._tickets)


class InProcessEvaluator(Evaluator):
    """Evaluates in the calling process, one batch at a time, at submit time.

    For `--workers 0`, tests, and anything that needs no Ray.
    """

    def __init__(self, backend: MaskEvaluator, name: str = "in-process") -> None:
        super().__init__()
        self._backend = backend
        self._name = name
        self._done: dict[int, list[Evaluation]] = {}

    @classmethod
    def for_feature_set(cls, feature_set: FeatureSet, config: ExperimentConfig) -> InProcessEvaluator:
        """Build the in-process evaluator around the real batched head trainer.

        Args:
            feature_set: the features to train on.
            config: the experiment (its head, training and robustness protocol).

        Returns:
            A ready evaluator.

        """
        from evoprune.workers.evaluation.evaluator import (
            BatchedEvaluator,  # heavy (TensorFlow/JAX): imported only when used
        )

        return cls(BatchedEvaluator(feature_set, config))

    @property
    def workers(self) -> int:
        return 1

    def idle_workers(self) -> int:
        return 1

    def pending(self) -> int:
        return len(self._done)

    def submit(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> int:
        ticket = self._next_ticket()
        masks = np.asarray(masks, dtype=bool)
        try:
            if not len(masks):
                evaluations = []
            elif screening is None:  # collaborators that know nothing of screening still plug in
                evaluations = list(self._backend.evaluate(masks))
            else:
                evaluations = list(self._backend.evaluate(masks, screening=screening))
        except Exception as error:
            raise EvaluationError(f"evaluating {len(masks)} masks failed: {error}") from error
        if len(evaluations) != len(masks):
            raise EvaluationError(f"the evaluator returned {len(evaluations)} results for {len(masks)} masks")
        self._done[ticket] = [
            e if e.worker else dataclasses.replace(e, worker=self._name) for e in evaluations
        ]
        return ticket

    def _wait(self, timeout_s: float | None) -> dict[int, list[Evaluation]]:
        done, self._done = self._done, {}
        return done

    def describe(self) -> EvaluatorDescription:
        return {"kind": "in-process", "workers": 1}


EvaluatorFactory = Callable[[FeatureSet, ExperimentConfig], Evaluator]
