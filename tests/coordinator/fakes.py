"""Test doubles of our collaborators: a cheap deterministic 3-objective problem and its Ray actor."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import ray

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation, minimisation_of
from evoprune.shared.screening import ScreeningRequest
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split


class FakeProblem:
    """Masks → (accuracy, active_fraction, auroc) by fixed random weights; deterministic per mask.

    A few inputs carry most of the signal and some inputs hurt, so selecting few good inputs wins — the
    same trade-off the real head shows, at microseconds per mask.
    """

    def __init__(
        self, length: int = 64, seed: int = 1234, delay_s: float = 0.0, max_epochs: int = 600
    ) -> None:
        rng = np.random.default_rng(seed)
        self.length = length
        self.max_epochs = max_epochs
        self.delay_s = delay_s
        self.accuracy_weights = rng.exponential(size=length) ** 3
        self.harm = rng.random(length) < 0.3
        self.auroc_weights = rng.exponential(size=length) ** 2

    def evaluate(
        self, masks: np.ndarray, worker: str = "fake", screening: ScreeningRequest | None = None
    ) -> list[Evaluation]:
        """Objectives per mask; with screening, each mask's values at the budget are 0.9 × accuracy and
        0.95 × AUROC, and the request's rule stops the hopeless ones there (as the real evaluator does)."""
        if self.delay_s:
            time.sleep(self.delay_s)
        results = []
        for index, mask in enumerate(np.asarray(masks, dtype=bool)):
            signal = float(self.accuracy_weights[mask & ~self.harm].sum() / self.accuracy_weights.sum())
            harm = float(np.count_nonzero(mask & self.harm)) / self.length
            accuracy = round(float(0.1 + 0.85 * (1.0 - np.exp(-6.0 * signal)) - 0.3 * harm), 6)
            robust = float(self.auroc_weights[mask].sum() / self.auroc_weights.sum())
            auroc = round(float(0.5 + 0.45 * np.tanh(3.0 * robust) - 0.2 * harm), 6)
            evaluation = Evaluation(
                accuracy=accuracy,
                active_fraction=float(mask.mean()),
                auroc=auroc,
                epochs=float(self.max_epochs),
                seconds=self.delay_s,
                worker=worker,
            )
            if screening is not None:
                low = (round(0.9 * accuracy, 6), evaluation.active_fraction, round(0.95 * auroc, 6))
                evaluation = dataclasses.replace(
                    evaluation, screen_accuracy=low[0], screen_auroc=low[2], screen_epochs=screening.epochs
                )
                if screening.hopeless(index, np.asarray(minimisation_of(low))):
                    evaluation = dataclasses.replace(
                        evaluation,
                        accuracy=low[0],
                        auroc=low[2],
                        epochs=float(screening.epochs),
                        fidelity=screening.epochs / self.max_epochs,
                    )
            results.append(evaluation)
        return results


def fake_feature_set(length: int = 64, key: str = "fake-features") -> FeatureSet:
    """A tiny feature set whose only meaningful parts are its key and width."""
    rng = np.random.default_rng(0)
    split = Split(features=rng.random((8, length)).astype(np.float32), labels=np.arange(8) % 2)
    fold = Fold(train=split, evaluation=split, ood=rng.random((8, length)).astype(np.float32))
    return FeatureSet(key=key, num_classes=2, folds=(fold,))


class FakeWorker:
    """The FeatureWorker interface (prepare, evaluate) around FakeProblem."""

    def __init__(self, feature_set: object, config: ExperimentConfig, delay_s: float = 0.0) -> None:
        self._feature_set = feature_set
        self._config = config
        self._delay_s = delay_s
        self._problem: FakeProblem | None = None

    def prepare(self) -> dict:
        self._problem = FakeProblem(length=self._feature_set.input_dim, delay_s=self._delay_s)  # type: ignore[attr-defined]
        return {"worker": f"fake-{os.getpid()}", "pid": os.getpid(), "device": "cpu"}

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        assert self._problem is not None, "prepare() first"
        return self._problem.evaluate(masks, worker=f"fake-{os.getpid()}", screening=screening)


class SlowFakeWorker(FakeWorker):
    """A FakeWorker that takes 50 ms per call, so that a test can kill it mid-run."""

    def __init__(self, feature_set: object, config: ExperimentConfig) -> None:
        super().__init__(feature_set, config, delay_s=0.05)


# no restarts: a killed worker stays dead, so the dispatcher's own re-dispatch path is what is tested
FakeWorkerActor = ray.remote(max_restarts=0, max_task_retries=0)(FakeWorker)
SlowFakeWorkerActor = ray.remote(max_restarts=0, max_task_retries=0)(SlowFakeWorker)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (two CPUs, no dashboard: fast to start)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()
