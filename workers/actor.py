"""The Ray worker: an actor that holds one experiment's features and evaluates batches of masks."""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import ray

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation
from evoprune.workers.features import FeatureSet

# A lost worker costs a retry, not a run: Ray restarts the actor and re-runs the call in flight.
MAX_RESTARTS = 4
MAX_TASK_RETRIES = 4


class FeatureWorkerImpl:
    """Keeps the feature arrays in memory (on the accelerator when there is one) across calls.

    The features come from the object store as one reference, put there once by the coordinator; they
    are loaded lazily in `prepare`, so a restarted actor rebuilds itself from the same reference.
    """

    def __init__(self, feature_set_ref: Any, config_json: str) -> None:
        self._feature_set_ref = feature_set_ref
        self._config = ExperimentConfig.model_validate_json(config_json)
        self._evaluator: Any = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def prepare(self) -> dict[str, Any]:
        """Loads the features and compiles nothing yet; returns what this worker is."""
        if self._evaluator is None:
            from evoprune.workers.backend import backend_name, device_description
            from evoprune.workers.evaluator import BatchedEvaluator

            value = self._feature_set_ref
            feature_set: FeatureSet = ray.get(value) if isinstance(value, ray.ObjectRef) else value
            self._evaluator = BatchedEvaluator(feature_set, self._config)
            self._backend, self._device = backend_name(), device_description()
        return {
            "worker": self.name,
            "backend": self._backend,
            "device": self._device,
            "mask_length": self._evaluator.mask_length,
        }

    def evaluate(self, masks: np.ndarray) -> list[Evaluation]:
        """Trains and scores one head per mask ((P, L) booleans)."""
        self.prepare()
        results = self._evaluator.evaluate(masks)
        return [_with_worker(result, self.name) for result in results]

    def pid(self) -> int:
        """The worker process id (tests kill it to prove restarts work)."""
        return os.getpid()


def _with_worker(result: Evaluation, worker: str) -> Evaluation:
    return Evaluation(**{**result.to_dict(), "worker": worker})  # type: ignore[arg-type]


FeatureWorker = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)(FeatureWorkerImpl)


def worker_options(cluster_gpus: float, workers: int) -> dict[str, Any]:
    """Resources each worker asks for: a GPU share when the cluster has GPUs, one CPU otherwise.

    Args:
        cluster_gpus: GPUs the cluster reports.
        workers: how many workers will share them.

    Returns:
        Keyword arguments for `FeatureWorker.options`.
    """
    if cluster_gpus > 0:
        return {"num_gpus": min(1.0, cluster_gpus / max(workers, 1)), "num_cpus": 1}
    return {"num_cpus": 1}
