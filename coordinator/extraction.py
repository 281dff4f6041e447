"""Feature extraction on a Ray worker node (a GPU one when the cluster has GPUs), into the shared cache."""

from __future__ import annotations

import logging
import os
from typing import cast

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.extract_task import ExtractionReport

log = logging.getLogger(__name__)

# Extraction runs under TensorFlow wherever it runs: the local path (`--workers 0`, the command line on one
# machine) extracts under TensorFlow, and the cache key does not name the backend, so a JAX worker node
# (KERAS_BACKEND=jax in its environment) must not fill the same cache entry with other float rounding.
# TFDS's loaders are tf.data pipelines too.
EXTRACTION_RUNTIME_ENV = {"env_vars": {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}}


def extraction_resources(cluster: dict[str, float]) -> dict[str, float]:
    """What the extraction task asks for: a CPU, and a whole GPU when the cluster has one.

    A node that offers neither (the API's, the head) can therefore never run it.

    Args:
        cluster: `ray.cluster_resources()`.

    Returns:
        Ray task options: num_cpus, and num_gpus.

    """
    return {"num_cpus": 1.0, "num_gpus": 1.0 if cluster.get("GPU", 0) >= 1 else 0.0}


def on_a_cluster(address: str | None) -> bool:
    """Whether this process works for a Ray cluster (it joined one, or was told where one is)."""
    return ray.is_initialized() or bool(address or os.environ.get("RAY_ADDRESS"))


def cluster_can_extract() -> bool:
    """Whether some node of the joined cluster offers a CPU, so that the extraction task can start."""
    return ray.cluster_resources().get("CPU", 0) >= 1


def extract_on_cluster(config: ExperimentConfig, address: str | None = None) -> ExtractionReport:
    """Fill the feature cache of an experiment on a Ray worker node and wait for it.

    The caller then loads the features from the same cache (a cache hit): the node running the task must
    mount the feature cache folder (`cache_dir`, else EVOPRUNE_CACHE_DIR) and the datasets at the paths
    this process sees them (docker-compose.yml and the cluster configs mount both on every node).

    Args:
        config: the experiment.
        address: the cluster to join when this process has not joined one yet (None: RAY_ADDRESS).

    Returns:
        What the task reported (`cached` file names, `cache_dir`, `backend`, `pid`, `seconds`, `node_id`)
        and `copied`: the files brought here because this process does not share the node's cache folder.

    Raises:
        Exception: whatever the extraction raised (a DatasetError or BackboneError names the source).

    """
    from evoprune.coordinator.dispatch import ensure_ray
    from evoprune.workers.features.extract_task import extract_into_cache

    ensure_ray(address)
    options = extraction_resources(ray.cluster_resources())
    task = ray.remote(max_retries=0)(extract_into_cache).options(
        **options, runtime_env=EXTRACTION_RUNTIME_ENV, name="evoprune-extract-features"
    )
    try:
        # what extract_into_cache returned, through Ray (which keeps no static type)
        report = cast(ExtractionReport, ray.get(task.remote(config)))
    except ray.exceptions.RayTaskError as error:
        # the task's own exception (DatasetError names the source), not Ray's wrapper
        raise error.as_instanceof_cause() from None
    log.info("features of %s extracted on a worker in %.1f s: %s", config.name, report["seconds"], report)
    report["copied"] = _copy_missing(config, report)
    return report


def _copy_missing(config: ExperimentConfig, report: ExtractionReport) -> list[str]:
    """Bring the cache files this process cannot see from the node that wrote them (no shared volume).

    Compose mounts one cache volume on every node, so nothing is copied there; the Ray cluster launcher's
    nodes each have their own disk, so the files come through the object store.
    """
    from evoprune.shared.atomic_files import atomic_file
    from evoprune.workers.features.extract_task import read_cache_files
    from evoprune.workers.features.feature_cache import resolve_cache_dir

    cache_dir = resolve_cache_dir(config.cache_dir)
    missing = [name for name in report["cached"] if not (cache_dir / name).is_file()]
    if not missing:
        return []
    reader = ray.remote(max_retries=0)(read_cache_files).options(
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=report["node_id"], soft=False),
    )
    files: dict[str, bytes] = ray.get(reader.remote(report["cache_dir"], missing))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        with atomic_file(cache_dir / name) as handle:
            handle.write(data)
    return missing
