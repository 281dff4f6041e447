"""How the API starts experiment runners and jobs (analysis, export) on Ray, and asks whether they live."""

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
from evoprune.coordinator.service.actors import RAY_NAMESPACE, actor_name
from evoprune.coordinator.service.jobs import JobBusyError, JobKind, JobSpec
from evoprune.coordinator.service.jobs_run import JOB_ACTOR
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

    def launch_job(self, spec: JobSpec) -> None:
        """Start a job on a finished experiment (an analysis, an export: the spec's kind says which).

        Raises:
            JobBusyError: a job of that kind on that experiment is already running.
            NotImplementedError: this launcher runs experiments only.

        """
        raise NotImplementedError(f"{type(self).__name__} cannot run jobs ({spec.job_kind.noun})")

    def job_alive(self, kind: JobKind[Any, Any], experiment_id: str) -> bool:
        """Whether the actor of the experiment's job of that kind exists."""
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

    def launch_job(self, spec: JobSpec) -> None:
        kind = spec.job_kind
        name = kind.actor_name(spec.experiment_id)

        def start() -> bool:
            require_results_node()
            try:
                JOB_ACTOR.options(name=name, namespace=RAY_NAMESPACE, lifetime="detached").remote(spec)
            except ValueError:
                # Ray refuses a second actor of one name: one job of a kind on an experiment at a time
                if self._named_actor_exists(name):
                    return False
                raise
            return True

        if not self._bounded(f"starting the {kind.noun}", start):
            raise JobBusyError(f"experiment {spec.experiment_id} is being {kind.participle}")

    def job_alive(self, kind: JobKind[Any, Any], experiment_id: str) -> bool:
        return self._bounded(
            f"looking up the {kind.noun}", lambda: self._named_actor_exists(kind.actor_name(experiment_id))
        )

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
        self._release.set()
        self._calls.shutdown(wait=False, cancel_futures=True)
