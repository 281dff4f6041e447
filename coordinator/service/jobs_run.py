"""Running one job of the service in its detached Ray actor, keeping the job's status file current."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import ray

from evoprune.coordinator.placement import on_results_node
from evoprune.coordinator.service.actors import BackgroundJob
from evoprune.coordinator.service.jobs import JobSpec, JobState, JobStatus, read_state, write_state
from evoprune.shared.storage import storage_path

log = logging.getLogger(__name__)


def run_job(
    spec: JobSpec, work: Callable[[Any, Callable[[str], None]], Mapping[str, object]] | None = None
) -> JobStatus:
    """Do one job on a finished experiment, keeping its status file current: stages, then the outcome.

    Args:
        spec: which results directory, and the options; its kind says what to do.
        work: a stand-in for the kind's work function, with its signature (tests).

    Returns:
        The final status: succeeded or failed.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    kind = spec.job_kind
    results_dir = storage_path(spec.results_dir)
    previous = read_state(kind, results_dir)
    requested_at = previous.requested_at if previous is not None else None
    base = replace(
        spec.request_state(),
        status=JobStatus.RUNNING,
        requested_at=time.time() if requested_at is None else requested_at,
        started_at=time.time(),
    )

    def report(state: JobState) -> None:
        try:
            write_state(kind, results_dir, state)
        except OSError as error:  # the outcome is still in the results (or absent); say why it is not here
            log.error("cannot write %s: %s", kind.status_file(results_dir), error)

    report(replace(base, stage="starting"))
    try:
        outcome = (work or kind.work)(spec, lambda line: report(replace(base, stage=line)))
        succeeded = replace(base, status=JobStatus.SUCCEEDED).with_outcome(outcome)
    except Exception as error:
        if isinstance(error, kind.expected_errors):
            message = str(error)
        else:
            log.error("%s of %s failed:\n%s", kind.noun, spec.experiment_id, traceback.format_exc())
            message = f"{type(error).__name__}: {error}"
        failed = replace(
            base, status=JobStatus.FAILED, error=" ".join(message.split()), finished_at=time.time()
        )
        report(failed)
        return JobStatus.FAILED
    report(replace(succeeded, finished_at=time.time()))
    return JobStatus.SUCCEEDED


class JobRunner(BackgroundJob):
    """The body of the detached Ray actor that does one job (see `JOB_ACTOR`)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        name = f"{spec.job_kind.noun}-{spec.experiment_id}"
        super().__init__(name, lambda: run_job(spec), JobStatus.RUNNING)


# A job reads the results directory and the datasets (the front is re-trained from the cached features, the
# heatmaps and the model check need the images) and writes analysis/ or exports/ beside them, so it runs on
# the node that mounts them; its TensorFlow work uses that node's CPUs, which it offers to no evaluator. No
# restarts: a crashed job is reported failed (see `job_state`) and can simply be asked for again.
JOB_ACTOR = ray.remote(**on_results_node(), max_restarts=0, max_task_retries=0)(JobRunner)
