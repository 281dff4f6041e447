"""The Ray worker: an actor that holds one experiment's features and evaluates batches of masks."""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import ray

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest
from evoprune.shared.worker_info import WorkerInfo
from evoprune.workers.features.feature_set import FeatureSet


class FeatureWorkerImpl:
    """Keeps the feature arrays in memory (on the accelerator when there is one) across calls.

    The features come from the object store as one reference, put there once by the coordinator; they
    are loaded lazily in `prepare`, so a replacement actor rebuilds itself from the same reference.
    """

    def __init__(self, feature_set_ref: Any, config: ExperimentConfig) -> None:
        self._feature_set_ref = feature_set_ref
        self._config = config
        self._evaluator: Any = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def prepare(self) -> WorkerInfo:
        """Loads the features and compiles nothing yet; returns what this worker is."""
        if self._evaluator is None:
            from evoprune.workers.backend import backend_name, device_description
            from evoprune.workers.evaluation.evaluator import BatchedEvaluator

            value = self._feature_set_ref
            feature_set: FeatureSet = ray.get(value) if isinstance(value, ray.ObjectRef) else value
            self._evaluator = BatchedEvaluator(feature_set, self._config)
            self._backend, self._device = backend_name(), device_description()
        return WorkerInfo(
            worker=self.name,
            backend=self._backend,
            device=self._device,
            mask_length=self._evaluator.mask_length,
        )

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        """Trains and scores one head per mask ((P, L) booleans), screening them when asked."""
        self.prepare()
        results = self._evaluator.evaluate(masks, screening)
        return [_with_worker(result, self.name) for result in results]

    def pid(self) -> int:
        """The worker process id (tests kill it to prove a lost worker is replaced)."""
        return os.getpid()


def _with_worker(result: Evaluation, worker: str) -> Evaluation:
    return Evaluation(**{**result.to_dict(), "worker": worker})  # type: ignore[arg-type]


# Retries are decided in one place, the dispatcher's failure policy (coordinator/dispatch.py), which
# replaces a lost worker with a fresh actor and sends its chunk again; Ray restarting the actor or re-running
# the call as well would multiply the sends of one chunk, so both are off.
FeatureWorker = ray.remote(max_restarts=0, max_task_retries=0)(FeatureWorkerImpl)
