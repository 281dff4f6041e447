"""How the API starts experiment, analysis and export runners on Ray, and asks whether they live."""

from __future__ import annotations

import abc
import threading
from typing import Any

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

    def __init__(self, store: StoreSpec, run: RunSettings | None = None) -> None:
        self._store = store
        self._run = run if run is not None else RunSettings()
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
            outcome["started"], _ = ensure_ray(self._run.address, include_dashboard=None)
        except Exception as error:
            outcome["error"] = error
            ready.set()
            return
        ready.set()
        self._release.wait()

    def launch(self, record: ExperimentRecord) -> None:
        self.connect()
        require_results_node()
        spec = RunnerSpec(experiment_id=record.id, store=self._store, run=self._run)
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
        if not self._start_one(ANALYSIS_ACTOR, analysis_actor_name(spec.experiment_id), spec):
            raise AnalysisBusyError(f"experiment {spec.experiment_id} is being analysed")

    def analysis_alive(self, experiment_id: str) -> bool:
        return self._exists(analysis_actor_name(experiment_id))

    def launch_export(self, spec: ExportSpec) -> None:
        if not self._start_one(EXPORT_ACTOR, export_actor_name(spec.experiment_id), spec):
            raise ExportBusyError(f"experiment {spec.experiment_id} is being exported")

    def export_alive(self, experiment_id: str) -> bool:
        return self._exists(export_actor_name(experiment_id))

    def _start_one(self, actor: Any, name: str, spec: Any) -> bool:
        """Start a detached named actor on the results node; False when one of that name still exists."""
        self.connect()
        require_results_node()
        try:
            actor.options(name=name, namespace=RAY_NAMESPACE, lifetime="detached").remote(spec)
        except ValueError:
            # Ray refuses a second actor of the same name: one analysis (export) of an experiment at a time
            if self._exists(name):
                return False
            raise
        return True

    def _exists(self, name: str) -> bool:
        self.connect()
        try:
            ray.get_actor(name, namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
        self._release.set()
