"""One experiment assembled and run the same way for every way in (the command line and the service)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evoprune.coordinator.constraints import Constraints
from evoprune.coordinator.evaluator_interface import Evaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.resilient_cache import ResilientFitnessCache
from evoprune.coordinator.results.checkpoint import Checkpoint
from evoprune.coordinator.results.directory import ExperimentError
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.tracking import ExperimentTracker, tracking_uri
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.events import EventBus
from evoprune.shared.fitness_cache import FitnessCache, LocalFitnessCache
from evoprune.shared.storage import StoragePath
from evoprune.workers.features.feature_set import FeatureSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """How an experiment runs, whichever way it came in; picklable, so a service runner carries it to Ray.

    The command line builds it from its flags and environment, the service from its own settings.
    """

    # worker actors; None: one per GPU, else one per CPU node; 0: evaluate in this process without Ray
    workers: int | None = None
    # the Ray cluster to join; None: RAY_ADDRESS, else a local Ray
    address: str | None = None
    # the shared fitness cache in Redis (REDIS_URL), its keys under "<redis_prefix>:fitness:"
    redis_url: str | None = None
    redis_prefix: str = "evoprune"
    # without Redis: a JSON-lines fitness cache shared by experiments (None: each experiment's own only)
    local_fitness_cache: str | None = None
    # the most bits a mask may have (a server's bound); None: no bound
    max_mask_length: int | None = None
    # "module:attribute" of a Ray actor class with the FeatureWorker interface; None: the real worker
    worker_actor: str | None = None
    # a progress bar while features are extracted (the terminal has one; a service runner has no terminal)
    show_progress: bool = False


@dataclass(frozen=True)
class Backend:
    """Where features and evaluations come from: the one seam of the assembly (tests swap in fakes)."""

    load_features: Callable[[ExperimentConfig, RunSettings], FeatureSet]
    make_evaluator: Callable[[FeatureSet, ExperimentConfig, RunSettings], Evaluator]


def load_features(config: ExperimentConfig, settings: RunSettings) -> FeatureSet:
    """Load (or extract and cache) an experiment's features.

    Args:
        config: the experiment.
        settings: whether to show extraction progress.

    Returns:
        The feature set.

    Raises:
        ExperimentError: the config cannot run, or its dataset cannot be loaded; the message says why.

    """
    from evoprune.coordinator.extraction import on_a_cluster
    from evoprune.workers.features.assemble import (
        load_feature_set,  # TensorFlow and datasets: loaded when used
    )

    problems = config.runnable_problems()
    if problems:
        raise ExperimentError("; ".join(problems))
    try:
        if settings.workers != 0 and on_a_cluster(settings.address):
            _extract_on_a_worker(config, settings.address)
        return load_feature_set(config, progress=settings.show_progress)
    except (ValueError, OSError) as error:
        # DatasetError, BackboneError and feature-schema errors are ValueErrors naming the file or field.
        raise ExperimentError(f"the dataset cannot be loaded: {error}") from None


def _extract_on_a_worker(config: ExperimentConfig, address: str | None) -> None:
    """Run the backbone on a worker node (its GPU when it has one), not on the API's or head's CPUs.

    load_feature_set then reads what it cached. Ray is left as it was found: a connection opened here is
    closed again, so that the evaluator opens (and owns) its own.
    """
    import ray

    from evoprune.coordinator.dispatch import ensure_ray
    from evoprune.coordinator.extraction import cluster_can_extract, extract_on_cluster

    connected_here, _ = ensure_ray(address)
    try:
        if cluster_can_extract():
            extract_on_cluster(config, address)
        else:
            log.warning("no node of the Ray cluster offers a CPU: extracting features in this process")
    finally:
        if connected_here:
            ray.shutdown()


def make_evaluator(feature_set: FeatureSet, config: ExperimentConfig, settings: RunSettings) -> Evaluator:
    """Start the evaluator the settings ask for: in this process (0 workers) or a Ray worker pool.

    Args:
        feature_set: the features the workers hold.
        config: the experiment (its training protocol).
        settings: workers, cluster address and worker actor class.

    Returns:
        A ready evaluator; the caller closes it.

    """
    if settings.workers == 0:
        from evoprune.coordinator.evaluator_interface import InProcessEvaluator

        return InProcessEvaluator.for_feature_set(feature_set, config)
    from evoprune.coordinator.dispatch import RayEvaluator

    actor_class = _import(settings.worker_actor) if settings.worker_actor else None
    return RayEvaluator(
        feature_set, config, workers=settings.workers, address=settings.address, actor_class=actor_class
    )


DEFAULT_BACKEND = Backend(load_features=load_features, make_evaluator=make_evaluator)


def _import(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def open_fitness_cache(settings: RunSettings) -> FitnessCache | None:
    """The fitness cache shared across experiments that the settings name, riding out its outages.

    Args:
        settings: the Redis URL and prefix, or the local cache file.

    Returns:
        The open cache, or None when experiments share none (each keeps its own ledger regardless).

    """
    inner: FitnessCache
    if settings.redis_url:
        from evoprune.shared.fitness_cache_redis import RedisFitnessCache  # the Redis client, when used

        # the project's Redis client (timeouts and the one retry policy): an unreachable Redis makes lookups
        # miss instead of hanging the search
        inner = RedisFitnessCache(settings.redis_url, prefix=f"{settings.redis_prefix}:fitness:")
    elif settings.local_fitness_cache:
        inner = LocalFitnessCache(settings.local_fitness_cache)
    else:
        return None
    return ResilientFitnessCache(inner)


def mask_length_problem(config: ExperimentConfig, limit: int | None, input_dim: int | None) -> str | None:
    """A server's mask-length bound, checked at submission (input_dim None) and once the features load.

    Args:
        config: the experiment.
        limit: the server's bound (EVOPRUNE_MAX_MASK_LENGTH); None: no bound.
        input_dim: the number of features; None checks the part known before they load.

    Returns:
        A message naming the field and the setting, or None when the mask fits.

    """
    if limit is None:
        return None
    problem = config.head.mask_length_problem(limit, input_dim, limit_name="this server allows")
    return None if problem is None else f"{problem}; EVOPRUNE_MAX_MASK_LENGTH sets the bound"


ReadyHook = Callable[[Experiment, list[EvaluationRow]], None]


def run_experiment(
    config: ExperimentConfig,
    results_dir: StoragePath,
    settings: RunSettings,
    bus: EventBus,
    checkpoint: Checkpoint | None = None,
    backend: Backend = DEFAULT_BACKEND,
    on_ready: ReadyHook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Summary:
    """Assemble an experiment, start or resume it, run it to its end and release what it used.

    Features are loaded, the mask length checked, the fitness cache opened and the evaluator started;
    then the experiment starts afresh (no checkpoint) or continues from `checkpoint`, runs, and the
    evaluator and cache are closed whatever happened.

    Args:
        config: the experiment.
        results_dir: where it writes (and, resuming, what it continues).
        settings: how it runs.
        bus: receives the experiment's events.
        checkpoint: the checkpoint to resume from (read once, by `directory.load_resumable` or the
            service runner); None starts afresh.
        backend: where features and evaluations come from.
        on_ready: called once the experiment is started or restored, before it runs, with the
            experiment and the journal rows a resume restored (empty for a fresh start).
        should_stop: polled between steps; True cancels (see `Experiment.run`).

    With `tracking.mlflow_uri` or MLFLOW_TRACKING_URI, the experiment is reported to MLflow as it runs.

    Returns:
        The summary, as in summary.json.

    Raises:
        ExperimentError: the config, features or results directory do not allow it to run, or it asks for
            MLflow tracking without MLflow installed.
        EvaluationError: evaluations failed beyond what the evaluator retries.

    """
    uri = tracking_uri(config)  # before the features load: a tracking config that cannot work says so first
    feature_set = backend.load_features(config, settings)
    mask_length = config.head.mask_length(feature_set.input_dim)
    problem = mask_length_problem(config, settings.max_mask_length, feature_set.input_dim)
    if problem is not None:
        raise ExperimentError(problem)
    cache = open_fitness_cache(settings)
    evaluator: Evaluator | None = None
    try:
        evaluator = backend.make_evaluator(feature_set, config, settings)
        constraints = Constraints.of(config, feature_set.input_dim, feature_set.num_classes)
        experiment = Experiment(
            config, results_dir, feature_set.key, mask_length, evaluator, bus, cache, constraints
        )
        if checkpoint is None:
            experiment.start()
            restored: list[EvaluationRow] = []
        else:
            restored = experiment.restore(checkpoint)
        if on_ready is not None:
            on_ready(experiment, restored)
        if uri is None:
            return experiment.run(should_stop)
        # MLflow hears the experiment through its events, from a thread of its own (coordinator/tracking.py)
        with ExperimentTracker(config, results_dir, uri, restored) as tracker:
            unsubscribe = bus.subscribe(tracker)
            try:
                return experiment.run(should_stop)
            finally:
                unsubscribe()
    finally:
        if evaluator is not None:
            evaluator.close()
        if cache is not None:
            cache.close()
