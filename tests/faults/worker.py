"""The worker actor of the fault matrix: the fake problem at a fixed pace, so a fault lands mid-run."""

from __future__ import annotations

import os

import ray

from evoprune.shared.config import ExperimentConfig
from tests.coordinator.fakes import FakeWorker

# seconds per worker call: long enough for a test to kill something between two steps, short enough that
# a whole experiment takes seconds (the service, not the trainer, is what the matrix tests)
PACE_ENV = "EVOPRUNE_FAULTS_PACE_S"


class PacedWorker(FakeWorker):
    """FakeWorker with the pace read from the environment of the Ray node it runs on."""

    def __init__(self, feature_set: object, config: ExperimentConfig) -> None:
        super().__init__(feature_set, config, delay_s=float(os.environ.get(PACE_ENV, "0.3")))


# as the real FeatureWorker: Ray does not restart it, the dispatcher replaces it
PacedWorkerActor = ray.remote(max_restarts=0, max_task_retries=0)(PacedWorker)
