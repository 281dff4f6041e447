"""Analyses of the HTTP service: `evoprune analyze` in a detached Ray actor that keeps its status current."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from evoprune.coordinator.analysis.inputs import AnalysisError
from evoprune.coordinator.placement import on_results_node
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.coordinator.service.actors import BackgroundJob
from evoprune.coordinator.service.analysis_status import AnalysisStatus, read_status, write_status

DEFAULT_TOP = 10
DEFAULT_SAMPLES = 4

log = logging.getLogger(__name__)


class AnalysisBusyError(Exception):
    """An analysis of this experiment is already running (its actor exists)."""


@dataclass(frozen=True)
class AnalysisSpec:
    """What one analysis needs, picklable: which experiment, where its results are, and the options."""

    experiment_id: str
    results_dir: str
    top: int = DEFAULT_TOP
    samples: int = DEFAULT_SAMPLES


def run_analysis(spec: AnalysisSpec, analyze: Callable[..., dict[str, Any]] | None = None) -> AnalysisStatus:
    """Analyse one finished experiment, keeping its status file current: stages, then the outcome.

    Args:
        spec: which results directory, and the options.
        analyze: `coordinator.analysis.analyze` or a stand-in with its signature (tests).

    Returns:
        The final status: succeeded or failed.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results_dir = Path(spec.results_dir)
    previous = read_status(results_dir) or {}
    base = {
        "requested_at": previous.get("requested_at", time.time()),
        "started_at": time.time(),
        "top": spec.top,
        "samples": spec.samples,
    }

    def report(**fields: Any) -> None:
        try:
            write_status(results_dir, {**base, **fields})
        except OSError as error:  # the outcome is still in analysis/ (or its absence); say why it is not here
            log.error("cannot write %s: %s", ResultsLayout(results_dir).analysis_status, error)

    report(status=AnalysisStatus.RUNNING.value, stage="starting")
    try:
        work = analyze if analyze is not None else _analyze()
        index = work(
            results_dir,
            top=spec.top,
            samples=spec.samples,
            log=lambda line: report(status=AnalysisStatus.RUNNING.value, stage=line),
        )
    except AnalysisError as error:
        report(
            status=AnalysisStatus.FAILED.value, error=" ".join(str(error).split()), finished_at=time.time()
        )
        return AnalysisStatus.FAILED
    except Exception as error:
        log.error("analysis of %s failed:\n%s", spec.experiment_id, traceback.format_exc())
        report(
            status=AnalysisStatus.FAILED.value,
            error=f"{type(error).__name__}: {error}",
            finished_at=time.time(),
        )
        return AnalysisStatus.FAILED
    report(
        status=AnalysisStatus.SUCCEEDED.value,
        finished_at=time.time(),
        artifacts=len(index.get("artifacts", [])),
    )
    return AnalysisStatus.SUCCEEDED


def _analyze() -> Callable[..., dict[str, Any]]:
    # imported here: the analyses pull in TensorFlow, which only the actor's process should load
    from evoprune.coordinator.analysis.analyze import analyze

    return analyze


class AnalysisRunner(BackgroundJob):
    """The body of the detached Ray actor that runs one analysis (see `ANALYSIS_ACTOR`)."""

    def __init__(self, spec: AnalysisSpec) -> None:
        self.spec = spec
        super().__init__(f"analysis-{spec.experiment_id}", lambda: run_analysis(spec), AnalysisStatus.RUNNING)


# It reads the results directory and the datasets (the front is re-trained from the cached features, the
# heatmaps need the images) and writes analysis/ beside them, so it runs on the node that mounts them; its
# TensorFlow work uses that node's CPUs, which it offers to no evaluator. No restarts: a crashed analysis is
# reported failed (see analysis_state) and can simply be asked for again.
ANALYSIS_ACTOR = ray.remote(**on_results_node(), max_restarts=0, max_task_retries=0)(AnalysisRunner)
