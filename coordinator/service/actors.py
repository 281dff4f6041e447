"""Names of the service's detached Ray actors, and how one of them ends itself."""

from __future__ import annotations

import os

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


def export_actor_name(experiment_id: str) -> str:
    """The name of an experiment's export actor in the `evoprune` Ray namespace."""
    return EXPORT_PREFIX + experiment_id
