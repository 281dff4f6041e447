"""Asking the service for a job on an experiment: the checks, the status file and the actor, in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from evoprune.coordinator.service.jobs import (
    JobBusyError,
    JobKind,
    JobRefusedError,
    JobSpec,
    JobState,
    JobStatus,
    JobUnavailableError,
    job_state,
    read_status_text,
    restore_status_text,
    waiting_state,
    write_state,
)
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.storage import storage_path
from evoprune.shared.store import ExperimentRecord

log = logging.getLogger(__name__)
SpecT = TypeVar("SpecT", bound=JobSpec)
StateT = TypeVar("StateT", bound=JobState)


def current_job(kind: JobKind[Any, StateT], record: ExperimentRecord, launcher: Launcher) -> StateT:
    """Where the latest job of a kind on an experiment stands.

    Args:
        kind: which job.
        record: the experiment.
        launcher: asked whether the job's actor still exists.

    Returns:
        The state (of the kind's state type).

    """

    def alive() -> bool:
        try:
            return launcher.job_alive(kind, record.id)
        except Exception:  # Ray unreachable: nothing says the actor died, so it is still running
            return True

    return job_state(kind, storage_path(record.results_dir), alive)


def request_job(
    kind: JobKind[SpecT, StateT], record: ExperimentRecord, launcher: Launcher, prepare: Callable[[], SpecT]
) -> StateT:
    """Start a job on a succeeded experiment in a detached Ray actor.

    The status file says "running" before the actor exists, so a reader never sees no job in between; it is
    put back when the actor cannot start because another is still finishing, and says "failed" when Ray
    refused.

    Args:
        kind: which job.
        record: the experiment.
        launcher: starts the job's actor.
        prepare: the kind's own checks of the request against the results, answered now rather than by the
            actor; returns the job's spec, or raises what the caller answers the client.

    Returns:
        The job's state just after the request.

    Raises:
        JobRefusedError: the experiment has not succeeded, or a job of this kind on it is running.
        JobUnavailableError: the results directory cannot be written, or Ray refused the actor.

    """
    if record.status != ExperimentStatus.SUCCEEDED:
        raise JobRefusedError(
            f"experiment {record.id} is {record.status}; only a succeeded experiment can be {kind.participle}"
        )
    spec = prepare()
    results_dir = storage_path(record.results_dir)
    with kind.starting:
        if current_job(kind, record, launcher).status == JobStatus.RUNNING:
            raise JobRefusedError(
                f"{kind.a_job} of experiment {record.id} is already running; {kind.running_advice}"
            )
        previous = read_status_text(kind, results_dir)
        waiting = waiting_state(spec)
        try:
            write_state(kind, results_dir, waiting)
        except OSError as error:
            raise JobUnavailableError(
                f"the results directory of experiment {record.id} cannot be written: {error}"
            ) from None
        try:
            launcher.launch_job(spec)
        except JobBusyError:
            restore_status_text(kind, results_dir, previous)
            raise JobRefusedError(
                f"{kind.a_job} of experiment {record.id} is {kind.busy_reason}; try again in a few seconds"
            ) from None
        except Exception as error:  # whatever Ray raised: the job is failed, the client is told
            log.exception("the %s of experiment %s could not be started", kind.noun, record.id)
            message = f"the {kind.noun} could not be started on Ray: {type(error).__name__}: {error}"
            failed = replace(
                waiting, status=JobStatus.FAILED, stage=None, error=message, finished_at=time.time()
            )
            write_state(kind, results_dir, failed)
            raise JobUnavailableError(message) from None
    return current_job(kind, record, launcher)
