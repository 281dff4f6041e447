"""MLflow tracking of an experiment, fed by its events and sent from a thread of its own, never in the way."""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from evoprune.coordinator.results.directory import ExperimentError
from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.coordinator.tracking_mlflow import MlflowSession, StepPoint, TrackingRejectedError
from evoprune.shared.config import MLFLOW_URI_VARIABLE, ExperimentConfig
from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.events import (
    EvaluationFinished,
    Event,
    ExperimentEnded,
    ExperimentStatus,
    RunFinished,
)
from evoprune.shared.pareto import ParetoArchive
from evoprune.shared.storage import StoragePath

log = logging.getLogger(__name__)

# points waiting for the server: one per run and one for the parent per search step (10 runs of 200
# evaluations make ~1,900); past this bound while the server is down, new points are dropped
QUEUE_POINTS = 20_000
# the sender sends what gathered at most this often: one request per run per interval, not per step
SEND_INTERVAL_S = 1.0
# while the server is unreachable, attempts are spaced out up to this
RETRY_MAX_DELAY_S = 30.0
# after the experiment ends: this many more attempts, this far apart, then what is left is dropped
FINAL_ATTEMPTS = 2
FINAL_RETRY_DELAY_S = 1.0
# the most an experiment's end waits for its tracking (the results uploaded as artifacts included), and for
# a server that did not answer the last attempt (a host that drops packets lets each call run its timeout)
FINAL_FLUSH_S = 120.0
UNREACHABLE_FLUSH_S = 30.0

_MLFLOW_STATUS = {
    ExperimentStatus.SUCCEEDED: "FINISHED",
    ExperimentStatus.CANCELLED: "KILLED",
    ExperimentStatus.FAILED: "FAILED",
}


def retry_delay_s(failures: int) -> float:
    """How long the sender waits after `failures` failed attempts in a row: 1, 2, 4, ... up to 30 s."""
    return float(min(RETRY_MAX_DELAY_S, 2.0 ** max(0, failures - 1)))


@dataclass
class _Progress:
    """One run's (or all runs') evaluations so far, its front and best accuracy."""

    archive: ParetoArchive = field(default_factory=ParetoArchive)
    evaluations: int = 0
    best_accuracy: float | None = None

    def add(self, event: EvaluationFinished) -> None:
        self.evaluations += 1
        if event.fidelity < 1.0:
            return  # a screened-out mask's short-budget objectives enter no front (as in the experiment)
        accuracy, active_fraction, auroc = event.objectives
        self.archive.add(np.array([[1.0 - accuracy, active_fraction, 1.0 - auroc]]), [event.mask])
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_accuracy = accuracy

    def point(self, run: int) -> StepPoint:
        metrics = {"hypervolume": self.archive.hypervolume, "front_size": float(len(self.archive.labels))}
        if self.best_accuracy is not None:
            metrics["best_accuracy"] = self.best_accuracy
        return StepPoint(run, self.evaluations, metrics, int(time.time() * 1000))


class StepRecorder:
    """Turns evaluation events into one point per completed search step, for its run and for all runs.

    A step's rows are announced together, so a step is complete when an event of another step (or of
    another kind) follows. Fronts and hypervolumes are the archive's (every evaluation so far), as the live
    page and the "front" events show them.
    """

    def __init__(self, runs: int) -> None:
        self._runs = [_Progress() for _ in range(runs)]
        self._all = _Progress()
        self._open: tuple[int, int] | None = None

    def record(self, event: EvaluationFinished) -> list[StepPoint]:
        """Take one evaluation; returns the points of the step it completed, if any."""
        points = self.flush() if self._open not in (None, (event.run, event.step)) else []
        self._open = (event.run, event.step)
        self._runs[event.run].add(event)
        self._all.add(event)
        return points

    def flush(self) -> list[StepPoint]:
        """The points of the step still open (none when none is)."""
        if self._open is None:
            return []
        run, _ = self._open
        self._open = None
        return [self._runs[run].point(run), self._all.point(AGGREGATE_RUN)]


def tracking_uri(config: ExperimentConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """Where the experiment is tracked (None: it is not), checked to be possible here.

    Args:
        config: the experiment (its tracking section).
        environ: the environment; None: this process's.

    Returns:
        The tracking URI: the config's `tracking.mlflow_uri`, else MLFLOW_TRACKING_URI.

    Raises:
        ExperimentError: the config asks for MLflow and it is not installed.

    """
    environ = os.environ if environ is None else environ
    uri = config.tracking.uri(environ)
    if uri is None or importlib.util.find_spec("mlflow") is not None:
        return uri
    if config.tracking.mlflow_uri is not None:
        raise ExperimentError(
            'tracking.mlflow_uri is set but MLflow is not installed: pip install "evoprune[mlflow]" '
            "(or remove tracking.mlflow_uri)"
        )
    log.warning(
        "%s is set but MLflow is not installed: the experiment is not tracked "
        '(pip install "evoprune[mlflow]")',
        MLFLOW_URI_VARIABLE,
    )
    return None


class ExperimentTracker:
    """An event subscriber that reports an experiment to MLflow from a background thread.

    The search's thread only turns events into points and puts them on a bounded queue; the sender thread
    creates the runs and sends. A server that is down is reported once and retried with growing delays;
    at the end the tracker makes a few more attempts, then drops what is left with one final warning. So
    the experiment never waits on MLflow except at its end, for at most FINAL_FLUSH_S
    (UNREACHABLE_FLUSH_S when the server did not answer the last attempt).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        results_dir: StoragePath,
        uri: str,
        restored: list[EvaluationRow] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.uri = uri
        self.session = MlflowSession(
            uri, config.tracking.experiment_name(config.name, environ), config, results_dir
        )
        self._recorder = StepRecorder(config.search.runs)
        self._queue: queue.Queue[StepPoint] = queue.Queue(maxsize=QUEUE_POINTS)
        self._unsent: list[StepPoint] = []
        self._finished_runs: set[int] = set()
        self._status: ExperimentStatus | None = None
        self._closing = False
        self._wake = threading.Event()
        self._dropped = 0  # points that found the queue full
        self._warned = False
        self._reachable = False  # whether the last attempt reached the server
        self._complete = False
        self._thread = threading.Thread(target=self._send_loop, name="mlflow-tracking", daemon=True)
        # a resume: the restored steps are points again; the server skips those its runs already hold
        for row in restored or []:
            self._put(self._recorder.record(row.event()))
        self._put(self._recorder.flush())

    # ---- the search's side: cheap, never blocks -------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, EvaluationFinished):
            self._put(self._recorder.record(event))
            return
        self._put(self._recorder.flush())
        if isinstance(event, RunFinished):
            self._finished_runs.add(event.run)
        elif isinstance(event, ExperimentEnded):
            self._status = event.status

    def _put(self, points: list[StepPoint]) -> None:
        for point in points:
            try:
                self._queue.put_nowait(point)
            except queue.Full:
                self._dropped += 1

    def start(self) -> ExperimentTracker:
        """Start the sender thread; returns the tracker."""
        self._thread.start()
        return self

    def close(self, status: ExperimentStatus | None = None, deadline_s: float = FINAL_FLUSH_S) -> bool:
        """End the tracking: the last points, the results as artifacts, the runs' final status.

        Args:
            status: how the experiment ended when no event said so (FAILED: an error before it ran).
            deadline_s: the most this waits for the sender.

        Returns:
            Whether everything reached the server.

        """
        self._put(self._recorder.flush())
        if self._status is None:
            self._status = status or ExperimentStatus.FAILED
        self._closing = True
        self._wake.set()
        if not self._reachable:
            deadline_s = min(deadline_s, UNREACHABLE_FLUSH_S)
        self._thread.join(deadline_s)
        if self._thread.is_alive():
            log.warning(
                "MLflow at %s did not take the experiment's end within %.0f s: tracking gives up "
                "(the results directory has everything)",
                self.uri,
                deadline_s,
            )
            return False
        return self._complete

    def __enter__(self) -> ExperimentTracker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            interrupted = not isinstance(error, Exception)  # Ctrl-C: resumable, like a cancel
            self.close(ExperimentStatus.CANCELLED if interrupted else ExperimentStatus.FAILED)

    # ---- the sender thread ----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        failures = 0
        final_attempts = 0
        while True:
            closing = self._closing
            try:
                self._send()
                if closing:
                    assert self._status is not None
                    self.session.finish(_MLFLOW_STATUS[self._status])
                    self._complete = self._dropped == 0
                    self._report_end()
                    return
                if failures:
                    log.warning("MLflow at %s answers again: tracking goes on", self.uri)
                failures = 0
                self._reachable = True
                self._wake.wait(SEND_INTERVAL_S)
            except TrackingRejectedError as error:
                # no retry helps: what was being sent is dropped, the rest goes on
                log.warning("MLflow at %s refused a request, which is dropped: %s", self.uri, error)
                self._unsent = []
                if closing:
                    return
            except Exception as error:
                failures += 1
                self._reachable = False
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "MLflow at %s cannot be reached (%s: %s): the experiment goes on and tracking "
                        "retries in the background",
                        self.uri,
                        type(error).__name__,
                        _first_line(error),
                    )
                if closing:
                    final_attempts += 1
                    if final_attempts >= FINAL_ATTEMPTS:
                        self._give_up()
                        return
                    time.sleep(FINAL_RETRY_DELAY_S)
                else:
                    self._wake.wait(retry_delay_s(failures))

    def _send(self) -> None:
        self.session.open()
        while True:
            if not self._unsent:
                self._unsent = _take(self._queue, 5000)
                if not self._unsent:
                    break
            self.session.log_points(self._unsent)
            self._unsent = []
        for run in sorted(self._finished_runs):
            self.session.end_run(run, "FINISHED")

    def _give_up(self) -> None:
        lost = len(self._unsent) + self._queue.qsize() + self._dropped
        log.warning(
            "MLflow at %s was not reached before the experiment ended: %d step points, the final "
            "status and the artifacts are not tracked (the results directory has them all)",
            self.uri,
            lost,
        )

    def _report_end(self) -> None:
        if self._dropped:
            log.warning(
                "MLflow at %s: %d step points were dropped while it could not be reached "
                "(more than %d waited)",
                self.uri,
                self._dropped,
                QUEUE_POINTS,
            )


def _take(points: queue.Queue[StepPoint], limit: int) -> list[StepPoint]:
    taken: list[StepPoint] = []
    while len(taken) < limit:
        try:
            taken.append(points.get_nowait())
        except queue.Empty:
            break
    return taken


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""
