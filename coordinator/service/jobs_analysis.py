"""The service's analysis job: `evoprune analyze` of a succeeded experiment, as a kind of the job family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from evoprune.coordinator.analysis.inputs import AnalysisError, read_results
from evoprune.coordinator.results.layout import ANALYSIS_DIR
from evoprune.coordinator.results.layout import ANALYSIS_INDEX_NAME as INDEX_NAME
from evoprune.coordinator.service.actors import analysis_actor_name
from evoprune.coordinator.service.jobs import JobKind, JobRefusedError, JobSpec, JobState, JobStatus
from evoprune.coordinator.service.jobs_requests import current_job, request_job
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.storage import StoragePath, storage_path
from evoprune.shared.store import ExperimentRecord

DEFAULT_TOP = 10
DEFAULT_SAMPLES = 4


@dataclass(frozen=True)
class AnalysisState(JobState):
    """Where the analysis of an experiment stands: its status file (analysis-status.json)."""

    top: int | None = None
    samples: int | None = None
    artifacts: int | None = None  # how many files the analysis wrote


@dataclass(frozen=True)
class AnalysisSpec(JobSpec):
    """What one analysis needs, picklable: which experiment, where its results are, and the options."""

    top: int = DEFAULT_TOP
    samples: int = DEFAULT_SAMPLES

    def request_state(self) -> AnalysisState:
        return AnalysisState(JobStatus.NONE, top=self.top, samples=self.samples)


class AnalysisOutcome(TypedDict):
    """What a finished analysis job reports in its status file."""

    artifacts: int  # how many files it wrote


def analyse(spec: AnalysisSpec, log: Callable[[str], None]) -> AnalysisOutcome:
    """Analyse one finished experiment into its analysis/ folder; the outcome: how many files it wrote."""
    # imported here: the analyses pull in TensorFlow, which only the actor's process should load
    from evoprune.coordinator.analysis.analyze import analyze

    index = analyze(storage_path(spec.results_dir), top=spec.top, samples=spec.samples, log=log)
    return {"artifacts": len(index.get("artifacts", []))}


def _analysed_outside_the_service(results_dir: StoragePath) -> bool:
    # `evoprune analyze` writes analysis/analysis.json and no status file
    return (results_dir / ANALYSIS_DIR / INDEX_NAME).is_file()


ANALYSIS = JobKind[AnalysisSpec, AnalysisState](
    noun="analysis",
    a_job="an analysis",
    participle="analysed",
    state_type=AnalysisState,
    status_path=lambda layout: layout.analysis_status,
    actor_name=analysis_actor_name,
    work=analyse,
    running_advice="wait for it to end",
    busy_reason="still running or finishing",
    expected_errors=(AnalysisError,),
    finished_without_status=_analysed_outside_the_service,
)
AnalysisSpec.job_kind = ANALYSIS


def current_analysis(record: ExperimentRecord, launcher: Launcher) -> AnalysisState:
    """Where the analysis of an experiment stands (the launcher says whether its actor still exists)."""
    return current_job(ANALYSIS, record, launcher)


def request_analysis(record: ExperimentRecord, launcher: Launcher, top: int, samples: int) -> AnalysisState:
    """Start the analysis of a succeeded experiment in a detached Ray actor.

    Args:
        record: the experiment.
        launcher: starts the analysis actor.
        top: most important neurons to report.
        samples: sample images in the heatmap grid.

    Returns:
        The analysis's state just after the request.

    Raises:
        JobRefusedError: the experiment has not succeeded, cannot be analysed, or is being analysed.
        JobUnavailableError: the results directory cannot be written, or Ray refused the actor.

    """

    def prepare() -> AnalysisSpec:
        try:
            # the checks the analysis starts with, answered now
            read_results(storage_path(record.results_dir))
        except AnalysisError as error:
            message = " ".join(str(error).split())
            raise JobRefusedError(f"experiment {record.id} cannot be analysed: {message}") from None
        return AnalysisSpec(record.id, record.results_dir, top=top, samples=samples)

    return request_job(ANALYSIS, record, launcher, prepare)
