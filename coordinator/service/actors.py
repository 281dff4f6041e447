"""Names of the service's detached Ray actors, and how one of them ends itself."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import ray

# detached actors are found again by name in this namespace (by a restarted API, by recovery)
RAY_NAMESPACE = "evoprune"
RUNNER_PREFIX = "evoprune-experiment-"
ANALYSIS_PREFIX = "evoprune-analysis-"
EXPORT_PREFIX = "evoprune-export-"


def actor_name(experiment_id: str) -> str:
    """The name of an experiment's runner actor in the `evoprune` Ray namespace."""
    return RUNNER_PREFIX + experiment_id


def analysis_actor_name(experiment_id: str) -> str:
    """The name of an experiment's analysis actor in the `evoprune` Ray namespace."""
    return ANALYSIS_PREFIX + experiment_id


def end_this_actor() -> None:
    """End the calling detached actor for good once its work is done: a detached actor never exits alone."""
    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:  # leaving the process is the fallback of last resort
        os._exit(0)


class BackgroundJob:
    """The body of a detached actor that does one job (an analysis, an export) and then ends itself.

    Like the experiment runner, the work runs on a thread started by the constructor, so it belongs to the
    actor alone and outlives the API process that asked for it.
    """

    def __init__(self, name: str, work: Callable[[], str], running: str) -> None:
        self.status = running
        self._work = work
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = self._work()
        finally:
            end_this_actor()

    def ping(self) -> str:
        """Answer whether the job is still going (its status)."""
        return self.status


def export_actor_name(experiment_id: str) -> str:
    """The name of an experiment's export actor in the `evoprune` Ray namespace."""
    return EXPORT_PREFIX + experiment_id
