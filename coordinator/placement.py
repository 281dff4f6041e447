"""Where the service's runner, analysis and export actors may run: the node with results and datasets."""

from __future__ import annotations

from typing import TypedDict

import ray

# A custom Ray resource that only the node mounting the results directory, the datasets and the feature
# cache offers (compose: the api service; the cluster configs: the head; a local Ray: its one node). Actors
# that read or write an experiment's files ask for a share of it, so Ray can only place them there, also
# when it restarts them; without it a runner asks for nothing and lands wherever Ray likes.
RESULTS_RESOURCE = "evoprune_results"
# what that node offers, and what each actor takes: up to 1000 runners, analyses and exports side by side
RESULTS_NODE_AMOUNT = 1.0
RESULTS_SHARE = 0.001


class ActorPlacement(TypedDict):
    """The Ray actor options `on_results_node` gives (keyword arguments of `ray.remote`)."""

    num_cpus: float
    resources: dict[str, float]


def results_node_resources() -> dict[str, float]:
    """The custom resources of the node that holds the results: `ray start --resources` or `ray.init`."""
    return {RESULTS_RESOURCE: RESULTS_NODE_AMOUNT}


def on_results_node() -> ActorPlacement:
    """Ray actor options that pin an actor to the node holding the results (it uses none of its CPUs)."""
    return {"num_cpus": 0, "resources": {RESULTS_RESOURCE: RESULTS_SHARE}}


class NoResultsNodeError(RuntimeError):
    """The Ray cluster has no node offering `RESULTS_RESOURCE`: an actor asking for it would wait forever."""


def require_results_node() -> None:
    """Fail fast, with the fix in the message, when no node of the connected cluster holds the results.

    Raises:
        NoResultsNodeError: no alive node offers `RESULTS_RESOURCE`.

    """
    if ray.cluster_resources().get(RESULTS_RESOURCE, 0) < RESULTS_SHARE:
        raise NoResultsNodeError(
            f"no node of the Ray cluster offers the {RESULTS_RESOURCE!r} resource, so nothing could run "
            "this experiment's actors next to its results: start the node that mounts the results and the "
            f"datasets (the API's) with ray start --resources='{{\"{RESULTS_RESOURCE}\": 1}}'"
        )
