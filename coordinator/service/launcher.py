"""How the API starts experiment, analysis and export runners on Ray, and asks whether they live."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

import ray

from evoprune.coordinator.assembly import RunSettings
from evoprune.coordinator.placement import require_results_node
from evoprune.coordinator.service.actors import (
    RAY_NAMESPACE,
    actor_name,
    analysis_actor_name,
    export_actor_name,
)
from evoprune.coordinator.service.analysis_launch import ANALYSIS_ACTOR, AnalysisBusyError, AnalysisSpec
from evoprune.coordinator.service.export_launch import EXPORT_ACTOR, ExportBusyError, ExportSpec
from evoprune.coordinator.service.runner import RUNNER_ACTOR, RunnerSpec
from evoprune.shared.store import ExperimentRecord, StoreSpec

T = TypeVar("T")
# how long a request waits for Ray: joining it, creating an actor, looking one up
RAY_TIMEOUT_S = 10.0
# starting a local Ray is no network wait but takes tens of seconds on a small machine
LOCAL_START_TIMEOUT_S = 120.0
# Ray calls that may block on the cluster run here, so a caller can stop waiting; a call that never returns
# holds one of these threads, never a request thread
RAY_CALL_THREADS = 4


class RayUnavailableError(RuntimeError):
    """Ray did not answer within the launcher's bound; the message names the address and the wait."""


class _Attempt:
    """One attempt to join Ray, which every caller waits on (each for at most its own bound)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.started = False
        self.error: BaseException | None = None


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

    def launch_export(self, spec: ExportSpec) -> None:
        """Start the export of one front member of a finished experiment (`evoprune export`).

        Raises:
            ExportBusyError: an export of that experiment is already running.
            NotImplementedError: this launcher runs experiments only.

        """
        raise NotImplementedError(f"{type(self).__name__} cannot run exports")

    def export_alive(self, experiment_id: str) -> bool:
        """Whether the experiment's export actor exists."""
        return False

    def close(self) -> None:
        """Release the connection to the cluster (runners keep going)."""
        return  # nothing to release by default


class RayLauncher(Launcher):
    """Starts runners as detached named actors on the local Ray or the cluster at `run.address`."""

    def __init__(
        self, store: StoreSpec, run: RunSettings | None = None, timeout_s: float = RAY_TIMEOUT_S
    ) -> None:
        self._store = store
        self._run = run if run is not None else RunSettings()
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._connected = False
        self._started_ray = False
        self._attempt: _Attempt | None = None
        self._release = threading.Event()
        self._calls = ThreadPoolExecutor(RAY_CALL_THREADS, thread_name_prefix="evoprune-ray-call")

    def _where(self) -> str:
        return f"Ray at {self._run.address}" if self._run.address else "the local Ray"

    def connect(self) -> None:
        """Join the Ray cluster (or start a local one) once; later calls return at once.

        Raises:
            RayUnavailableError: Ray did not answer within the bound (the attempt goes on in the background).
            Exception: whatever joining or starting Ray raised.

        """
        with self._lock:
            if self._connected:
                return
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = _Attempt()
                # A local Ray's GCS and raylet are started with PR_SET_PDEATHSIG, which fires when the
                # *thread* that spawned them exits; connect() runs on short-lived startup and request
                # threads, so the start happens on a thread that lives as long as this launcher.
                threading.Thread(
                    target=self._hold_ray, args=(attempt,), name="evoprune-ray", daemon=True
                ).start()
        # waited for outside the lock: callers share the one attempt, and none holds a lock across the network
        bound_s = self._timeout_s if self._run.address else max(self._timeout_s, LOCAL_START_TIMEOUT_S)
        if not attempt.ready.wait(bound_s):
            raise RayUnavailableError(f"{self._where()} did not answer within {bound_s:g} s")
        with self._lock:
            if attempt.error is not None:
                if self._attempt is attempt:
                    self._attempt = None  # the next call tries again
                raise attempt.error
            self._started_ray = attempt.started
            self._connected = True

    def _hold_ray(self, attempt: _Attempt) -> None:
        from evoprune.coordinator.dispatch import ensure_ray

        try:
            attempt.started, _ = ensure_ray(self._run.address, include_dashboard=None)
        except Exception as error:
            attempt.error = error
            attempt.ready.set()
            return
        attempt.ready.set()
        self._release.wait()

    def _bounded(self, what: str, call: Callable[[], T]) -> T:
        """Run a Ray call that may block on the cluster, waiting for it at most the launcher's bound."""
        self.connect()
        future = self._calls.submit(call)
        try:
            return future.result(timeout=self._timeout_s)
        except FutureTimeoutError:
            future.cancel()  # still queued behind stuck calls: it never runs
            raise RayUnavailableError(
                f"{self._where()} did not answer within {self._timeout_s:g} s ({what})"
            ) from None

    def launch(self, record: ExperimentRecord) -> None:
        spec = RunnerSpec(experiment_id=record.id, store=self._store, run=self._run)

        def start() -> None:
            require_results_node()
            RUNNER_ACTOR.options(
                name=actor_name(record.id),
                namespace=RAY_NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
            ).remote(spec)

        self._bounded("starting the runner", start)

    def _named_actor_exists(self, name: str) -> bool:
        try:
            ray.get_actor(name, namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        return True

    def alive(self, experiment_id: str) -> bool:
        return self._bounded(
            "looking up the runner", lambda: self._named_actor_exists(actor_name(experiment_id))
        )

    def launch_analysis(self, spec: AnalysisSpec) -> None:
        name = analysis_actor_name(spec.experiment_id)
        if not self._start_one(ANALYSIS_ACTOR, name, spec, "starting the analysis"):
            raise AnalysisBusyError(f"experiment {spec.experiment_id} is being analysed")

    def analysis_alive(self, experiment_id: str) -> bool:
        return self._bounded(
            "looking up the analysis", lambda: self._named_actor_exists(analysis_actor_name(experiment_id))
        )

    def launch_export(self, spec: ExportSpec) -> None:
        name = export_actor_name(spec.experiment_id)
        if not self._start_one(EXPORT_ACTOR, name, spec, "starting the export"):
            raise ExportBusyError(f"experiment {spec.experiment_id} is being exported")

    def export_alive(self, experiment_id: str) -> bool:
        return self._bounded(
            "looking up the export", lambda: self._named_actor_exists(export_actor_name(experiment_id))
        )

    def _start_one(self, actor: Any, name: str, spec: Any, what: str) -> bool:
        """Start a detached named actor on the results node; False when one of that name still exists."""

        def start() -> bool:
            require_results_node()
            try:
                actor.options(name=name, namespace=RAY_NAMESPACE, lifetime="detached").remote(spec)
            except ValueError:
                # Ray refuses a second actor of one name: one analysis (export) of an experiment at a time
                if self._named_actor_exists(name):
                    return False
                raise
            return True

        return self._bounded(what, start)

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
        self._release.set()
        self._calls.shutdown(wait=False, cancel_futures=True)
