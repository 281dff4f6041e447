"""`evoprune run|resume` on the fake problem, for tests that must kill a real process.

Environment: FAKE_DELAY_S (seconds per evaluate call), FAKE_LOG (a file that gets one line per mask the
fake trains, to prove nothing is trained twice), FAKE_FEATURE_KEY (the feature-set key, which is part of
every fitness-cache key; a fresh one keeps a test's shared-cache entries its own), FAKE_REAL=1 (the real
features and the real batched trainer in process, still logging what it trains).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from evoprune.api.cli.main import build_parser
from evoprune.api.cli.run import resume_command, run_command
from evoprune.coordinator.assembly import DEFAULT_BACKEND, Backend, RunSettings
from evoprune.coordinator.evaluator_interface import Evaluator, InProcessEvaluator
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.masks import encode_mask
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest
from evoprune.workers.features.feature_set import FeatureSet
from tests.coordinator.fakes import FakeProblem, fake_feature_set


class LoggingProblem(FakeProblem):
    def __init__(self, log_path: str | None, delay_s: float) -> None:
        super().__init__(length=64, delay_s=delay_s)
        self.log_path = log_path

    def evaluate(
        self, masks: np.ndarray, worker: str = "fake", screening: ScreeningRequest | None = None
    ) -> list[Evaluation]:
        results = super().evaluate(masks, worker, screening)
        if self.log_path:
            with open(self.log_path, "a") as handle:
                handle.write("".join(encode_mask(m) + "\n" for m in masks))
        return results


class LoggingTrainer:
    """The real batched trainer, with every mask it trains appended to FAKE_LOG."""

    def __init__(self, feature_set: FeatureSet, config: ExperimentConfig, log_path: str | None) -> None:
        from evoprune.workers.evaluation.evaluator import BatchedEvaluator

        self.trainer = BatchedEvaluator(feature_set, config)
        self.log_path = log_path

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        results = self.trainer.evaluate(masks, screening)
        if self.log_path:
            with open(self.log_path, "a") as handle:
                handle.write("".join(encode_mask(m) + "\n" for m in masks))
        return results


def load_features(config: ExperimentConfig, settings: RunSettings) -> FeatureSet:
    if os.environ.get("FAKE_REAL"):
        return DEFAULT_BACKEND.load_features(config, settings)
    return fake_feature_set(64, key=os.environ.get("FAKE_FEATURE_KEY", "fake-features"))


def make_evaluator(feature_set: FeatureSet, config: ExperimentConfig, settings: RunSettings) -> Evaluator:
    if os.environ.get("FAKE_REAL"):
        return InProcessEvaluator(LoggingTrainer(feature_set, config, os.environ.get("FAKE_LOG")))
    problem = LoggingProblem(os.environ.get("FAKE_LOG"), float(os.environ.get("FAKE_DELAY_S", "0")))
    if not settings.workers:
        return InProcessEvaluator(problem)
    from evoprune.coordinator.dispatch import RayEvaluator
    from tests.coordinator.fakes import FakeWorkerActor

    return RayEvaluator(
        feature_set,
        config,
        workers=settings.workers,
        address=settings.address,
        actor_class=FakeWorkerActor,
        include_dashboard=False,
    )


BACKEND = Backend(load_features=load_features, make_evaluator=make_evaluator)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_command(args, BACKEND)
    return resume_command(args, BACKEND)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
