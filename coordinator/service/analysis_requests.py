"""Asking the service to analyse an experiment: the checks, the status file and the actor, in order."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from evoprune.coordinator.analysis.inputs import AnalysisError, read_results
from evoprune.coordinator.service.analysis_launch import AnalysisBusyError, AnalysisSpec
from evoprune.coordinator.service.analysis_status import (
    AnalysisState,
    AnalysisStatus,
    analysis_state,
    mark_requested,
    read_status,
    restore_status,
    write_status,
)
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import ExperimentRecord

log = logging.getLogger(__name__)
# one start at a time in this process, so two requests cannot both find no analysis running
_starting = threading.Lock()


class AnalysisRefusedError(Exception):
    """The experiment cannot be analysed now (not succeeded, unreadable results, or being analysed)."""


class AnalysisUnavailableError(Exception):
    """The analysis could not be started: its results directory or the Ray cluster failed."""


def current_analysis(record: ExperimentRecord, launcher: Launcher) -> AnalysisState:
    """Where the analysis of an experiment stands.

    Args:
        record: the experiment.
        launcher: asked whether the analysis actor still exists.

    Returns:
        The state.

    """

    def alive() -> bool:
        try:
            return launcher.analysis_alive(record.id)
        except Exception:  # Ray unreachable: nothing says the actor died, so it is still running
            return True

    return analysis_state(Path(record.results_dir), alive)


def request_analysis(record: ExperimentRecord, launcher: Launcher, top: int, samples: int) -> AnalysisState:
    """Start the analysis of a succeeded experiment in a detached Ray actor.

    The status file says "running" before the actor exists, so a reader never sees no analysis in between;
    it is put back when the actor cannot start because another is still finishing, and says "failed" when
    Ray refused.

    Args:
        record: the experiment.
        launcher: starts the analysis actor.
        top: most important neurons to report.
        samples: sample images in the heatmap grid.

    Returns:
        The analysis's state just after the request.

    Raises:
        AnalysisRefusedError: the experiment has not succeeded, cannot be analysed, or is being analysed.
        AnalysisUnavailableError: the results directory cannot be written, or Ray refused the actor.

    """
    if record.status != ExperimentStatus.SUCCEEDED:
        raise AnalysisRefusedError(
            f"experiment {record.id} is {record.status}; only a succeeded experiment can be analysed"
        )
    results_dir = Path(record.results_dir)
    try:
        read_results(results_dir)  # the checks the analysis starts with, answered now rather than later
    except AnalysisError as error:
        message = " ".join(str(error).split())
        raise AnalysisRefusedError(f"experiment {record.id} cannot be analysed: {message}") from None
    spec = AnalysisSpec(record.id, str(results_dir), top=top, samples=samples)
    with _starting:
        if current_analysis(record, launcher).status == AnalysisStatus.RUNNING:
            raise AnalysisRefusedError(
                f"an analysis of experiment {record.id} is already running; wait for it to end"
            )
        previous = read_status(results_dir)
        try:
            mark_requested(results_dir, top, samples)
        except OSError as error:
            raise AnalysisUnavailableError(
                f"the results directory of experiment {record.id} cannot be written: {error}"
            ) from None
        try:
            launcher.launch_analysis(spec)
        except AnalysisBusyError:
            restore_status(results_dir, previous)
            raise AnalysisRefusedError(
                f"an analysis of experiment {record.id} is still running or finishing; try again "
                "in a few seconds"
            ) from None
        except Exception as error:  # whatever Ray raised: the analysis is failed, the client is told
            log.exception("the analysis of experiment %s could not be started", record.id)
            message = f"the analysis could not be started on Ray: {type(error).__name__}: {error}"
            failed = {"status": AnalysisStatus.FAILED.value, "error": message, "finished_at": time.time()}
            write_status(results_dir, {**(read_status(results_dir) or {}), **failed})
            raise AnalysisUnavailableError(message) from None
    return current_analysis(record, launcher)
