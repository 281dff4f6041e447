"""Dispatch policies: small pure functions that decide chunking, retries and worker resources."""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass

import numpy as np
import ray.exceptions

MAX_ATTEMPTS_PER_BATCH = 4
MAX_MASKS_PER_CALL = 256


def plan_chunks(
    count: int, idle_workers: int, max_per_call: int = MAX_MASKS_PER_CALL
) -> list[tuple[int, int]]:
    """Split a batch of `count` masks into contiguous chunks, one call each.

    Args:
        count: masks in the batch.
        idle_workers: workers free to take a chunk now (at least one chunk is made even when none is).
        max_per_call: the most masks one call may carry.

    Returns:
        (start, stop) slices covering 0..count in order, as even as possible.

    """
    if count <= 0:
        return []
    pieces = max(1, min(count, idle_workers), math.ceil(count / max_per_call))
    bounds = np.linspace(0, count, pieces + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


class FailureKind(enum.Enum):
    """What went wrong with a worker call."""

    WORKER_UNAVAILABLE = "worker_unavailable"  # unreachable for now; the process may still be alive
    WORKER_LOST = "worker_lost"  # the process died
    EVALUATION_ERROR = "evaluation_error"  # the evaluator itself raised


class FailureAction(enum.Enum):
    """What the controller does about a failed call."""

    RETRY = "retry"  # send the chunk again to the same worker
    REPLACE = "replace"  # start a new worker in the lost one's place, then send the chunk again
    GIVE_UP = "give_up"  # fail the batch


@dataclass(frozen=True)
class FailureDecision:
    """The policy's answer to a failed call, and why."""

    action: FailureAction
    reason: str


def classify_failure(error: BaseException) -> FailureKind:
    """Names the kind of failure of a worker call.

    Args:
        error: what `ray.get` raised.

    Returns:
        The kind of failure.

    """
    if isinstance(error, ray.exceptions.ActorUnavailableError):
        return FailureKind.WORKER_UNAVAILABLE
    if isinstance(
        error,
        ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError | ray.exceptions.ObjectLostError,
    ):
        return FailureKind.WORKER_LOST
    return FailureKind.EVALUATION_ERROR


def decide_on_failure(
    kind: FailureKind, attempts: int, max_attempts: int = MAX_ATTEMPTS_PER_BATCH
) -> FailureDecision:
    """Decide what to do about a failed call: the one retry policy (Ray's own actor and task retries are off).

    Args:
        kind: from `classify_failure`.
        attempts: how many times this chunk has been sent, the failed one included.
        max_attempts: the most sends per chunk.

    Returns:
        The decision. An error raised by the evaluator itself is deterministic, so it is never retried.

    """
    if kind is FailureKind.EVALUATION_ERROR:
        return FailureDecision(
            FailureAction.GIVE_UP, "the evaluator raised an error; retrying would repeat it"
        )
    if attempts >= max_attempts:
        return FailureDecision(FailureAction.GIVE_UP, f"the batch failed {attempts} times")
    if kind is FailureKind.WORKER_UNAVAILABLE:
        return FailureDecision(FailureAction.RETRY, "the worker is unreachable for now")
    return FailureDecision(FailureAction.REPLACE, "the worker process died")


def resources_per_worker(cluster: dict[str, float], workers: int) -> dict[str, float]:
    """Ray resources each worker actor asks for, so that W workers always fit the cluster.

    Args:
        cluster: `ray.cluster_resources()`.
        workers: the pool size.

    Returns:
        num_cpus, and num_gpus when the cluster has GPUs (a share of one GPU when workers outnumber them).

    """
    cpus = float(cluster.get("CPU", 1.0))
    gpus = float(cluster.get("GPU", 0.0))
    # a cluster whose compute nodes have not joined yet shows 0 CPUs (head and API nodes offer none); asking
    # for zero would let the actors land on those nodes, so ask for a whole CPU and wait for a worker node
    request = {"num_cpus": round(min(1.0, cpus / workers), 4) if cpus > 0 else 1.0}
    if gpus > 0:
        request["num_gpus"] = round(min(1.0, gpus / workers), 4)
    return request


def default_worker_count(cluster: dict[str, float], cpu_nodes: int = 1) -> int:
    """One worker per GPU; without GPUs, one per node that offers CPUs (a worker uses every core of its node).

    Args:
        cluster: `ray.cluster_resources()`.
        cpu_nodes: alive nodes with CPUs to offer.

    Returns:
        The pool size `--workers` defaults to.

    """
    gpus = int(cluster.get("GPU", 0.0))
    return gpus if gpus > 0 else max(1, cpu_nodes)
