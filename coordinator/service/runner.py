"""The service's experiment runner: a detached Ray actor that runs one experiment and publishes it."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field

import ray

from evoprune.coordinator.assembly import DEFAULT_BACKEND, Backend, RunSettings, run_experiment
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.placement import on_results_node
from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError, Journal
from evoprune.coordinator.results.directory import ExperimentError, existing_checkpoint, resumable
from evoprune.coordinator.results.layout import ResultsLayout, results_layout
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.service.actors import end_this_actor
from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.coordinator.service.records import restore_lost_records, write_record_copy
from evoprune.shared.config import ConfigError, parse_config
from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.events import (
    EventBus,
    ExperimentFailed,
    ExperimentStatus,
    ExperimentSucceeded,
    StatusChanged,
)
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

# a runner whose process dies (out of memory, a lost node) is restarted by Ray and resumes from its
# checkpoint: the experiment-level recovery, unrelated to the dispatcher's retries of worker calls
RUNNER_RESTARTS = 3
STORE_ATTEMPTS_AT_START = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSpec:
    """All a runner needs, picklable: Ray keeps it to restart the runner after a crash."""

    experiment_id: str
    store: StoreSpec
    run: RunSettings = field(default_factory=RunSettings)
    final_publish_deadline_s: float = 600.0


def _initial_record(store: Store, spec: RunnerSpec) -> tuple[ExperimentRecord, FrontState, list[StoredEvent]]:
    """The record, fronts and events the store holds (retrying while it is unreachable)."""

    def load() -> tuple[ExperimentRecord, FrontState, list[StoredEvent]]:
        snapshot = store.snapshot(spec.experiment_id)
        if snapshot is None and restore_lost_records(store, spec.store, only=spec.experiment_id):
            # the store lost the record before this runner read it (Redis restarted empty just after the
            # submission): the copy the API wrote beside the results brings it back
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


def run_service_experiment(
    spec: RunnerSpec, backend: Backend = DEFAULT_BACKEND, store: Store | None = None
) -> ExperimentStatus:
    """Run (or resume) one experiment of the service to its end, publishing it to the store.

    Args:
        spec: which experiment, where its store is, and how it runs.
        backend: where features and evaluations come from (tests swap in fakes).
        store: the store to publish to; None opens the one `spec.store` names (and closes it at the end).

    Returns:
        The final status: succeeded, failed or cancelled.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    own_store = store is None
    store = open_store(spec.store) if store is None else store
    record, front, history = _initial_record(store, spec)
    layout = results_layout(record.results_dir)
    if record.terminal:
        return record.status  # a restarted runner of an experiment that already ended
    publisher = StorePublisher(store, record, front, history)
    publisher.start()
    bus = EventBus()
    bus.subscribe(publisher)
    started_at = record.started_at or time.time()  # a resumed experiment keeps its first start
    publisher(StatusChanged(status=ExperimentStatus.RUNNING, started_at=started_at))
    try:
        config = parse_config(record.config, f"experiment {record.id}")
        # read once, here, and passed on: the experiment restores from this very checkpoint
        checkpoint = existing_checkpoint(layout.root)
        if checkpoint is not None and checkpoint.finished:
            _publish_finished(publisher, layout, checkpoint, config.search.runs)
        else:
            if checkpoint is not None:
                checkpoint = resumable(layout.root, config, checkpoint)

            def ready(experiment: Experiment, restored: list[EvaluationRow]) -> None:
                # running still, now with the mask length the features decided
                publisher(StatusChanged(status=ExperimentStatus.RUNNING, mask_length=experiment.mask_length))
                if checkpoint is not None:
                    publisher.catch_up(restored, config.search.runs)

            run_experiment(
                config,
                layout.root,
                spec.run,
                bus,
                checkpoint,
                backend,
                on_ready=ready,
                should_stop=lambda: _cancel_requested(store, spec.experiment_id),
            )
    except (ConfigError, ExperimentError) as error:
        publisher(ExperimentFailed(message=str(error)))
    except Exception as error:
        log.error("experiment %s failed:\n%s", spec.experiment_id, traceback.format_exc())
        if not publisher.terminal:  # Experiment.run has already said so when the error came from there
            publisher(ExperimentFailed(message=f"{type(error).__name__}: {error}"))
    finally:
        published = publisher.stop(spec.final_publish_deadline_s)
        write_record_copy(layout, *publisher.view.copies())
        if own_store:
            store.close()
        if not published:
            log.error("experiment %s: the store missed its final state", spec.experiment_id)
    return publisher.view.record.status


def _publish_finished(
    publisher: StorePublisher, layout: ResultsLayout, checkpoint: Checkpoint, runs: int
) -> None:
    """The runner died after the experiment finished but before the store heard: publish the end."""
    try:
        records = Journal(layout.journal).read(checkpoint.rows, checkpoint.journal_sha256)
    except CheckpointError as error:
        raise ExperimentError(f"{layout.root} is corrupt: {error}.") from None
    publisher.catch_up([EvaluationRow.from_dict(record) for record in records], runs)
    summary = Summary.read(layout.summary)
    publisher(
        ExperimentSucceeded(
            hypervolume=summary.aggregate.hypervolume_archive,
            evaluations=summary.aggregate.evaluations,
            cache_hits=summary.aggregate.cache_hits,
            seconds=summary.wall_time_s,
            results_dir=str(layout.root),
        )
    )


def _cancel_requested(store: Store, experiment_id: str) -> bool:
    try:
        return store.cancel_requested(experiment_id)
    except StoreError:
        return False  # the store is down: keep going; the request is seen once it is back


class ExperimentRunner:
    """The body of the detached Ray actor that owns one experiment (see `RUNNER_ACTOR`).

    The experiment runs on a thread started by the constructor, so it belongs to the actor alone: the API
    process that created it may stop and start again meanwhile. When Ray restarts a crashed runner, the
    constructor runs again and the experiment resumes from its checkpoint. A finished runner removes itself.
    """

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self.status = ExperimentStatus.RUNNING
        self._thread = threading.Thread(
            target=self._run, name=f"experiment-{spec.experiment_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = run_service_experiment(self.spec)
        finally:
            end_this_actor()

    def ping(self) -> str:
        """Answer whether the experiment thread is still going."""
        return self.status


# pinned to the node that mounts the results directory and the datasets, also when Ray restarts it
RUNNER_ACTOR = ray.remote(**on_results_node(), max_restarts=RUNNER_RESTARTS, max_task_retries=0)(
    ExperimentRunner
)
