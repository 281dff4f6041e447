"""Ray dispatch: worker actors holding the features evaluate every run's masks, as the policies decide."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import ray.exceptions

from evoprune.coordinator.dispatch_policy import (
    MAX_MASKS_PER_CALL,
    FailureAction,
    classify_failure,
    decide_on_failure,
    default_worker_count,
    plan_chunks,
    resources_per_worker,
)
from evoprune.coordinator.evaluator_interface import EvaluationError, Evaluator, EvaluatorDescription
from evoprune.coordinator.placement import results_node_resources
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest
from evoprune.shared.worker_info import WorkerInfo
from evoprune.workers.features.feature_set import FeatureSet

log = logging.getLogger(__name__)


def cpu_node_count() -> int:
    """Alive nodes of the connected Ray cluster that offer CPUs (head and API nodes started with 0 do not)."""
    return sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0)


def ensure_ray(address: str | None = None, include_dashboard: bool | None = None) -> tuple[bool, str]:
    """Connect to a Ray cluster, or start a local one.

    Args:
        address: a cluster address; None falls back to RAY_ADDRESS, then to a new local instance.
        include_dashboard: start the dashboard of a local instance (None lets Ray decide).

    Returns:
        (whether this call started Ray, the dashboard URL or "").

    """
    if ray.is_initialized():
        return False, ""
    address = address or os.environ.get("RAY_ADDRESS") or None
    # worker output (TensorFlow start-up chatter) would tear the progress bar; it stays in Ray's log files
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        context = ray.init(address=address, **common)
    else:
        # the one local node holds the results too: the service's runners and analyses may run there
        context = ray.init(
            num_cpus=os.cpu_count() or 1,
            resources=results_node_resources(),
            include_dashboard=include_dashboard,
            **common,
        )
    url = getattr(context, "dashboard_url", "") or ""
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return True, url


# ---- the controller -------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    ticket: int
    start: int
    masks: np.ndarray
    screening: ScreeningRequest | None = None
    attempts: int = 0


@dataclass
class _Worker:
    index: int
    handle: Any
    prepared: Any  # the ObjectRef of prepare(): the worker's info once it resolves
    chunk: _Chunk | None = None
    generation: int = 0


@dataclass
class _Ticket:
    size: int
    results: dict[int, list[Evaluation]] = field(default_factory=dict)
    received: int = 0


class RayEvaluator(Evaluator):
    """Evaluates masks on W Ray actors that hold the feature set; survives the loss of worker processes.

    The feature set is put in the object store once; every actor (and any replacement) reads it from there.
    A submitted batch is split across the idle workers; a chunk whose worker died is sent again to a fresh
    worker, so a lost worker costs time, never results.
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        config: ExperimentConfig,
        workers: int | None = None,
        address: str | None = None,
        actor_class: Any = None,
        max_masks_per_call: int = MAX_MASKS_PER_CALL,
        include_dashboard: bool | None = None,
    ) -> None:
        super().__init__()
        if actor_class is None:
            from evoprune.workers.evaluation.actor import (
                FeatureWorker,  # the default worker: the real masked-head trainer
            )

            actor_class = FeatureWorker
        self._started_ray, self.dashboard_url = ensure_ray(address, include_dashboard)
        cluster = ray.cluster_resources()
        count = workers if workers is not None else default_worker_count(cluster, cpu_node_count())
        if count <= 0:
            raise ValueError("a Ray evaluator needs at least one worker")
        self._actor_class = actor_class
        self._resources = resources_per_worker(cluster, count)
        self._feature_ref = ray.put(feature_set)
        # the frozen config travels typed: Ray pickles it, and unpickling validates nothing a second time
        self._config = config
        self._max_per_call = max_masks_per_call
        self._workers = [self._new_worker(index) for index in range(count)]
        self._queue: list[_Chunk] = []
        self._in_flight: dict[Any, _Worker] = {}
        self._open: dict[int, _Ticket] = {}
        self.replacements = 0
        self.calls = 0
        self.masks_sent = 0
        try:
            self._await_prepared()
        except EvaluationError:
            self.close()
            raise

    def _await_prepared(self) -> None:
        """Wait until every worker has prepared; one lost while starting is replaced, as during a batch.

        Raises:
            EvaluationError: prepare() raised (the features or config are at fault), or a worker kept dying.

        """
        attempts = [1] * len(self._workers)
        waiting = list(range(len(self._workers)))
        while waiting:
            index = waiting.pop(0)
            worker = self._workers[index]
            try:
                ray.get(worker.prepared)
                continue
            except ray.exceptions.RayError as error:
                decision = decide_on_failure(classify_failure(error), attempts[index])
                if decision.action is FailureAction.GIVE_UP:
                    raise EvaluationError(
                        f"the workers could not start ({decision.reason}): {error}"
                    ) from error
            log.warning("worker %d: %s while starting; starting it again", index, decision.reason)
            attempts[index] += 1
            if decision.action is FailureAction.REPLACE:
                with contextlib.suppress(ray.exceptions.RayError):
                    ray.kill(worker.handle, no_restart=True)
                self._workers[index] = self._new_worker(index, worker.generation + 1)
                self.replacements += 1
            waiting.append(index)

    def _new_worker(self, index: int, generation: int = 0) -> _Worker:
        # SPREAD: on a CPU cluster the default packing would put every worker on the first node
        handle = self._actor_class.options(**self._resources, scheduling_strategy="SPREAD").remote(
            self._feature_ref, self._config
        )
        return _Worker(index=index, handle=handle, prepared=handle.prepare.remote(), generation=generation)

    @property
    def workers(self) -> int:
        return len(self._workers)

    def idle_workers(self) -> int:
        return max(0, sum(worker.chunk is None for worker in self._workers) - len(self._queue))

    def pending(self) -> int:
        return len(self._open)

    def worker_infos(self) -> list[WorkerInfo]:
        """Return what each worker's prepare() reported (worker id, device, pid...), waiting if needed."""
        infos: list[WorkerInfo] = []
        for worker in self._workers:
            try:
                infos.append(WorkerInfo(**ray.get(worker.prepared, timeout=60)))
            except ray.exceptions.RayError as error:
                infos.append({"error": str(error)})
        return infos

    def submit(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> int:
        masks = np.asarray(masks, dtype=bool)
        ticket = self._next_ticket()
        self._open[ticket] = _Ticket(size=len(masks))
        if len(masks) == 0:
            self._finished[ticket] = []
            del self._open[ticket]
            return ticket
        for start, stop in plan_chunks(len(masks), max(1, self.idle_workers()), self._max_per_call):
            part = None if screening is None else screening.sliced(start, stop)
            self._queue.append(_Chunk(ticket=ticket, start=start, masks=masks[start:stop], screening=part))
        self._assign()
        return ticket

    def _assign(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.chunk is None:
                chunk = self._queue.pop(0)
                chunk.attempts += 1
                self.calls += 1
                self.masks_sent += len(chunk.masks)
                worker.chunk = chunk
                if chunk.screening is None:  # worker classes that know nothing of screening still plug in
                    reference = worker.handle.evaluate.remote(chunk.masks)
                else:
                    reference = worker.handle.evaluate.remote(chunk.masks, screening=chunk.screening)
                self._in_flight[reference] = worker

    def _wait(self, timeout_s: float | None) -> dict[int, list[Evaluation]]:
        finished: dict[int, list[Evaluation]] = {}
        while not finished and self._in_flight:
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout_s)
            if not ready:
                break
            more, _ = ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=0)
            for ref in dict.fromkeys([*ready, *more]):
                self._collect(ref, finished)
            self._assign()
        return finished

    def _collect(self, ref: Any, finished: dict[int, list[Evaluation]]) -> None:
        worker = self._in_flight.pop(ref)
        chunk = worker.chunk
        assert chunk is not None
        worker.chunk = None
        try:
            evaluations = ray.get(ref)
        except ray.exceptions.RayError as error:
            self._handle_failure(worker, chunk, error)
            return
        if len(evaluations) != len(chunk.masks):
            raise EvaluationError(
                f"a worker returned {len(evaluations)} results for {len(chunk.masks)} masks"
            )
        ticket = self._open[chunk.ticket]
        name = f"worker-{worker.index}"
        ticket.results[chunk.start] = [e if e.worker else _with_worker(e, name) for e in evaluations]
        ticket.received += len(evaluations)
        if ticket.received == ticket.size:
            del self._open[chunk.ticket]
            finished[chunk.ticket] = [e for start in sorted(ticket.results) for e in ticket.results[start]]

    def _handle_failure(self, worker: _Worker, chunk: _Chunk, error: BaseException) -> None:
        decision = decide_on_failure(classify_failure(error), chunk.attempts)
        if decision.action is FailureAction.GIVE_UP:
            raise EvaluationError(
                f"evaluating {len(chunk.masks)} masks failed ({decision.reason}): {error}"
            ) from error
        log.warning(
            "worker %d: %s; sending its %d masks again", worker.index, decision.reason, len(chunk.masks)
        )
        if decision.action is FailureAction.REPLACE:
            with contextlib.suppress(ray.exceptions.RayError):  # it may already be gone
                ray.kill(worker.handle, no_restart=True)
            self._workers[worker.index] = self._new_worker(worker.index, worker.generation + 1)
            self.replacements += 1
        self._queue.insert(0, chunk)

    def describe(self) -> EvaluatorDescription:
        return {
            "kind": "ray",
            "workers": len(self._workers),
            "resources_per_worker": self._resources,
            "dashboard_url": self.dashboard_url,
            "replaced_workers": self.replacements,
            "calls": self.calls,
            "masks_per_call": round(self.masks_sent / self.calls, 2) if self.calls else 0.0,
        }

    def close(self) -> None:
        for worker in self._workers:
            try:
                ray.kill(worker.handle, no_restart=True)
            except ray.exceptions.RayError:
                continue
        self._workers = []
        if self._started_ray:
            ray.shutdown()


def _with_worker(evaluation: Evaluation, name: str) -> Evaluation:
    return dataclasses.replace(evaluation, worker=name)
