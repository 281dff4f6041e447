"""Experiments of the HTTP service: each runs in its own detached Ray actor, which publishes to the store."""

from __future__ import annotations

import abc
import importlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.exceptions

from evoprune.coordinator.checkpoint import CheckpointError, read_json
from evoprune.coordinator.evaluator import Evaluator
from evoprune.coordinator.experiment import Experiment, ExperimentError, load_resumable
from evoprune.coordinator.service_analysis import (
    ANALYSIS_ACTOR,
    AnalysisBusyError,
    AnalysisSpec,
    analysis_actor_name,
    end_this_actor,
)
from evoprune.coordinator.service_cache import ResilientFitnessCache
from evoprune.coordinator.service_publish import StorePublisher
from evoprune.shared.config import ConfigError, ExperimentConfig, parse_config
from evoprune.shared.events import EventBus, ExperimentFailed, ExperimentFinished
from evoprune.shared.fitness_cache import FitnessCache
from evoprune.shared.store import (
    ExperimentRecord,
    FrontState,
    Store,
    StoredEvent,
    StoreError,
    StoreSpec,
    retry,
)
from evoprune.shared.store_factory import open_store

RAY_NAMESPACE = "evoprune"
ACTOR_PREFIX = "evoprune-experiment-"
# a runner whose process dies (out of memory, a lost node) is restarted by Ray and resumes from its checkpoint
RUNNER_RESTARTS = 3
# the final record and fronts, kept in the results directory for a store that lost them
RECORD_COPY = "service-state.json"
STORE_ATTEMPTS_AT_START = 8

log = logging.getLogger(__name__)


def actor_name(experiment_id: str) -> str:
    """The name of an experiment's runner actor in the `evoprune` Ray namespace."""
    return ACTOR_PREFIX + experiment_id


@dataclass(frozen=True)
class RunnerSpec:
    """All a runner needs, picklable: Ray keeps it to restart the runner after a crash."""

    experiment_id: str
    store: StoreSpec
    workers: int | None = None
    max_mask_length: int | None = None
    # "module:attribute" of a Ray actor class with the FeatureWorker interface; None = the real worker
    worker_actor: str | None = None
    final_publish_deadline_s: float = 600.0


def _import(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _make_evaluator(spec: RunnerSpec, config: ExperimentConfig) -> tuple[Evaluator, str, int]:
    """Load the features and start the worker pool, the way `evoprune run` does."""
    from evoprune.coordinator.dispatch import RayEvaluator
    from evoprune.workers.assemble import load_feature_set

    try:
        feature_set = load_feature_set(config, progress=False)
    except (ValueError, OSError) as error:
        raise ExperimentError(f"the dataset cannot be loaded: {error}") from None
    mask_length = config.head.mask_length(feature_set.input_dim)
    if spec.max_mask_length is not None and mask_length > spec.max_mask_length:
        raise ExperimentError(
            f"head: the mask would have {mask_length} bits, more than this server allows "
            f"({spec.max_mask_length}, EVOPRUNE_MAX_MASK_LENGTH)"
        )
    actor_class = _import(spec.worker_actor) if spec.worker_actor else None
    evaluator = RayEvaluator(feature_set, config, workers=spec.workers, actor_class=actor_class)
    return evaluator, feature_set.key, mask_length


def _read_journal(results_dir: Path, rows: int) -> list[dict[str, Any]]:
    # read-only: Experiment.restore is the one that trims the journal back to the checkpoint
    path = results_dir / "state" / "journal.jsonl"

    lines = path.read_text(encoding="utf-8").splitlines()[:rows] if rows else []
    return [json.loads(line) for line in lines]


def _initial_record(store: Store, spec: RunnerSpec) -> tuple[ExperimentRecord, FrontState, list[StoredEvent]]:
    """The record, fronts and events the store holds (retrying while it is unreachable)."""

    def load() -> tuple[ExperimentRecord, FrontState, list[StoredEvent]]:
        snapshot = store.snapshot(spec.experiment_id)
        if snapshot is None:
            raise StoreError(f"the store has no experiment {spec.experiment_id}")
        events: list[StoredEvent] = []
        after = 0
        while batch := store.read_events(spec.experiment_id, after, limit=5000):
            events.extend(batch)
            after = batch[-1][0]
        return snapshot.record, snapshot.front, events

    return retry(load, (StoreError,), STORE_ATTEMPTS_AT_START, first_delay_s=0.25, max_delay_s=4.0)


def run_experiment(
    spec: RunnerSpec,
    make_evaluator: Callable[..., tuple[Evaluator, str, int]] = _make_evaluator,
    store: Store | None = None,
) -> str:
    """Run (or resume) one experiment of the service to its end, publishing it to the store.

    Args:
        spec: which experiment, where its store is, and the server's limits.
        make_evaluator: builds (evaluator, feature key, mask length) from (spec, config).
        store: the store to publish to; None opens the one `spec.store` names (and closes it at the end).

    Returns:
        The final status: succeeded, failed or cancelled.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    own_store = store is None
    store = open_store(spec.store) if store is None else store
    record, front, history = _initial_record(store, spec)
    results_dir = Path(record.results_dir)
    if record.terminal:
        return record.status  # a restarted runner of an experiment that already ended
    publisher = StorePublisher(store, record, front, history)
    publisher.start()
    bus = EventBus()
    bus.subscribe(publisher)
    evaluator: Evaluator | None = None
    cache: FitnessCache | None = None
    started_at = record.started_at or time.time()  # a resumed experiment keeps its first start
    publisher.add({"type": "status", "status": "running", "started_at": started_at})
    try:
        config = parse_config(record.config, f"experiment {record.id}")
        evaluator, feature_key, mask_length = make_evaluator(spec, config)
        cache = ResilientFitnessCache(store.fitness_cache())
        # running again, now with the mask length the features decided
        publisher.add({"type": "status", "status": "running", "mask_length": mask_length})
        experiment = Experiment(config, results_dir, feature_key, mask_length, evaluator, bus, cache)
        checkpoint = _checkpoint(results_dir)
        if checkpoint is not None and checkpoint.get("status") == "finished":
            _publish_finished(publisher, results_dir, checkpoint, config.search.runs)
        else:
            if checkpoint is None:
                experiment.start()
            else:
                config, checkpoint = load_resumable(results_dir)
                rows = _read_journal(results_dir, int(checkpoint["rows"]))
                experiment.restore(checkpoint)
                publisher.catch_up(rows, config.search.runs)
            experiment.run(should_stop=lambda: _cancel_requested(store, spec.experiment_id))
    except (ConfigError, ExperimentError) as error:
        publisher(ExperimentFailed(message=str(error)))
    except Exception as error:
        log.error("experiment %s failed:\n%s", spec.experiment_id, traceback.format_exc())
        if not publisher.terminal:  # Experiment.run has already said so when the error came from there
            publisher(ExperimentFailed(message=f"{type(error).__name__}: {error}"))
    finally:
        if evaluator is not None:
            evaluator.close()
        if cache is not None:
            cache.close()
        published = publisher.stop(spec.final_publish_deadline_s)
        _write_record_copy(results_dir, *publisher.view.copies())
        if own_store:
            store.close()
        if not published:
            log.error("experiment %s: the store missed its final state", spec.experiment_id)
    return publisher.view.record.status


def _checkpoint(results_dir: Path) -> dict[str, Any] | None:
    path = results_dir / "state" / "checkpoint.json"
    if not path.exists():
        return None
    try:
        return dict(read_json(path))
    except CheckpointError:
        return None


def _publish_finished(publisher: StorePublisher, results_dir: Path, checkpoint: dict, runs: int) -> None:
    """The runner died after the experiment finished but before the store heard: publish the end."""
    rows = _read_journal(results_dir, int(checkpoint["rows"]))
    publisher.catch_up(rows, runs)
    summary = read_json(results_dir / "summary.json")
    publisher(
        ExperimentFinished(
            hypervolume=summary["aggregate"]["hypervolume_archive"],
            evaluations=summary["aggregate"]["evaluations"],
            cache_hits=summary["aggregate"]["cache_hits"],
            seconds=summary.get("wall_time_s", 0.0),
            results_dir=str(results_dir),
        )
    )


def _cancel_requested(store: Store, experiment_id: str) -> bool:
    try:
        return store.cancel_requested(experiment_id)
    except StoreError:
        return False  # the store is down: keep going; the request is seen once it is back


def _write_record_copy(results_dir: Path, record: ExperimentRecord, front: FrontState) -> None:
    # the results directory is the source of truth: the API rebuilds a record the store lost from this copy

    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        temporary = results_dir / f".{RECORD_COPY}.{os.getpid()}.tmp"
        state = {"record": record.to_dict(), "front": front.to_dict()}
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, results_dir / RECORD_COPY)
    except OSError as error:
        log.error("cannot write %s: %s", results_dir / RECORD_COPY, error)


class ExperimentRunner:
    """The body of the detached Ray actor that owns one experiment (see `RUNNER_ACTOR`).

    The experiment runs on a thread started by the constructor, so it belongs to the actor alone: the API
    process that created it may stop and start again meanwhile. When Ray restarts a crashed runner, the
    constructor runs again and the experiment resumes from its checkpoint. A finished runner removes itself.
    """

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self.status = "running"
        self._thread = threading.Thread(
            target=self._run, name=f"experiment-{spec.experiment_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = run_experiment(self.spec)
        finally:
            end_this_actor()

    def ping(self) -> str:
        """Answer whether the experiment thread is still going."""
        return self.status


RUNNER_ACTOR = ray.remote(num_cpus=0, max_restarts=RUNNER_RESTARTS, max_task_retries=0)(ExperimentRunner)


class Launcher(abc.ABC):
    """How the API starts experiments and asks whether their runners live; swapped for a fake in tests."""

    @abc.abstractmethod
    def launch(self, record: ExperimentRecord) -> None:
        """Start (or resume) the runner of an experiment whose record is in the store."""

    @abc.abstractmethod
    def alive(self, experiment_id: str) -> bool:
        """Whether the experiment's runner exists."""

    def launch_analysis(self, spec: AnalysisSpec) -> None:
        """Start the analysis of a finished experiment (`evoprune analyze` of its results directory).

        Raises:
            AnalysisBusyError: an analysis of that experiment is already running.
            NotImplementedError: this launcher runs experiments only.

        """
        raise NotImplementedError(f"{type(self).__name__} cannot run analyses")

    def analysis_alive(self, experiment_id: str) -> bool:
        """Whether the experiment's analysis actor exists."""
        return False

    def close(self) -> None:
        """Release the connection to the cluster (runners keep going)."""
        return  # nothing to release by default


class RayLauncher(Launcher):
    """Starts runners as detached named actors on the local Ray or the cluster at `address`."""

    def __init__(
        self,
        store: StoreSpec,
        address: str | None = None,
        workers: int | None = None,
        max_mask_length: int | None = None,
        worker_actor: str | None = None,
    ) -> None:
        self._store = store
        self._address = address
        self._workers = workers
        self._max_mask_length = max_mask_length
        self._worker_actor = worker_actor
        self._lock = threading.Lock()
        self._connected = False
        self._started_ray = False
        self._release = threading.Event()

    def connect(self) -> None:
        """Join the Ray cluster (or start a local one) once; later calls return at once.

        Raises:
            Exception: whatever joining or starting Ray raised.

        """
        with self._lock:
            if self._connected:
                return
            outcome: dict[str, Any] = {}
            ready = threading.Event()
            # A local Ray's GCS and raylet are started with PR_SET_PDEATHSIG, which fires when the *thread*
            # that spawned them exits; connect() runs on short-lived startup and request threads, so the
            # start happens on a thread that lives as long as this launcher.
            holder = threading.Thread(
                target=self._hold_ray, args=(outcome, ready), name="evoprune-ray", daemon=True
            )
            holder.start()
            ready.wait()
            if "error" in outcome:
                raise outcome["error"]
            self._started_ray = bool(outcome["started"])
            self._connected = True

    def _hold_ray(self, outcome: dict[str, Any], ready: threading.Event) -> None:
        from evoprune.coordinator.dispatch import ensure_ray

        try:
            outcome["started"], _ = ensure_ray(self._address, include_dashboard=None)
        except Exception as error:
            outcome["error"] = error
            ready.set()
            return
        ready.set()
        self._release.wait()

    def launch(self, record: ExperimentRecord) -> None:
        self.connect()
        spec = RunnerSpec(
            experiment_id=record.id,
            store=self._store,
            workers=self._workers,
            max_mask_length=self._max_mask_length,
            worker_actor=self._worker_actor,
        )
        RUNNER_ACTOR.options(
            name=actor_name(record.id),
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
        ).remote(spec)

    def alive(self, experiment_id: str) -> bool:
        self.connect()
        try:
            ray.get_actor(actor_name(experiment_id), namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        return True

    def launch_analysis(self, spec: AnalysisSpec) -> None:
        self.connect()
        try:
            ANALYSIS_ACTOR.options(
                name=analysis_actor_name(spec.experiment_id), namespace=RAY_NAMESPACE, lifetime="detached"
            ).remote(spec)
        except ValueError:
            # Ray refuses a second actor of the same name: one analysis of an experiment at a time
            if self.analysis_alive(spec.experiment_id):
                raise AnalysisBusyError(f"experiment {spec.experiment_id} is being analysed") from None
            raise

    def analysis_alive(self, experiment_id: str) -> bool:
        self.connect()
        try:
            ray.get_actor(analysis_actor_name(experiment_id), namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
        self._release.set()


def recover(store: Store, launcher: Launcher, created_before: float | None = None) -> list[str]:
    """Resume experiments whose runner is gone (the Ray cluster restarted): from their checkpoints.

    Args:
        store: where the records are.
        launcher: starts runners.
        created_before: only experiments created before this time (those submitted since are being
            launched by their own request).

    Returns:
        The ids of the experiments started again.

    """
    resumed = []
    for record in store.records():
        if record.terminal or (created_before is not None and record.created_at >= created_before):
            continue
        if launcher.alive(record.id):
            continue
        log.warning("experiment %s has no runner; resuming it from its checkpoint", record.id)
        launcher.launch(record)
        resumed.append(record.id)
    return resumed


def restore_lost_records(store: Store, spec: StoreSpec, only: str | None = None) -> list[str]:
    """Put back records the store lost, from the copies in the results directories.

    That happens when Redis restarts without persistence after the experiments' runners had ended.

    Args:
        store: the store.
        spec: the store's spec (its data directory holds the results directories).
        only: restore this experiment only (None: every results directory).

    Returns:
        The ids restored.

    """
    root = spec.results_root
    folders = [root / only] if only is not None else (sorted(root.iterdir()) if root.is_dir() else [])
    restored = []
    for folder in folders:
        path = folder / RECORD_COPY
        if not path.is_file() or store.get(folder.name) is not None:
            continue
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            record = ExperimentRecord.from_dict(state["record"])
            front = FrontState.from_dict(state["front"])
        except (OSError, ValueError, KeyError, StoreError) as error:
            log.error("cannot restore %s: %s", path, error)
            continue
        if record.id != folder.name:
            continue
        # no events: the stream of a restored experiment is its snapshot and `done`
        store.publish(record.id, [], record, front, expect_existing=False)
        restored.append(record.id)
    return restored
