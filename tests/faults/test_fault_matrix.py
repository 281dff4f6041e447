"""The fault matrix (issue 24, point 2): each part of the service killed mid-experiment, and what it promises.

One real cluster per module: a Ray head (which holds the results) and a worker node started with
`ray start`, a private redis-server, `evoprune serve` and its results directory. The workers run the fake
problem at a fixed pace (the service, not the trainer, is under test). One uninterrupted experiment is the
reference; every faulted experiment uses the same config and seed, and each gets the fault twice:

- early: the runner is up and no step has been evaluated yet (only the start checkpoint exists);
- late: the first step and more are journaled (the checkpoint after a later step exists).

The promise checked for every cell, besides the cell's own:
- the experiment ends `succeeded` within a bound (nothing waits forever);
- `evaluations.parquet` equals the reference's row for row (run, step, mask, objectives, cached);
- the ledger (`state/trained.jsonl`, what the experiment trained itself) holds each mask once and the
  same masks as the reference's: no finished evaluation is lost or trained twice;
- a client following `GET /events` across the fault (the API's own client, resuming with Last-Event-ID)
  sees evaluations 1..N each exactly once, then `done`.
README's "What survives a fault" table lists these cells and the existing tests that cover others.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evoprune.api import client as client_module
from tests.faults.cluster import (
    TOTAL_EVALUATIONS,
    Cluster,
    Follower,
    comparable_rows,
    ledger_lines,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.redis]

EXPERIMENT_TIMEOUT_S = 240.0
POINT_TIMEOUT_S = 120.0
# SIGTERM asks for a clean stop: a part that takes longer than this to go is a hang
EXIT_WITHIN_S = 30.0
EARLY, LATE = "early", "late"
FIRST_STEP_ROWS = 16
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}


@dataclass(frozen=True)
class Reference:
    rows: list[tuple[Any, ...]]
    trained: list[str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = time.monotonic()
    cluster = Cluster(tmp_path_factory.mktemp("faults"))
    patch = pytest.MonkeyPatch()
    try:
        # the client stops reconnecting after 30 refused attempts a second apart (it says so, and a new
        # follow resumes); a whole cluster restarted on a busy 2-core machine can take longer than that
        patch.setattr(client_module, "MAX_RECONNECTS", 120)
        cluster.start()
        print(f"cluster started in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        cluster.stop()
        patch.undo()


@pytest.fixture(scope="module")
def reference(cluster: Cluster) -> Reference:
    """One uninterrupted experiment of the matrix's config and seed."""
    started = time.monotonic()
    experiment_id = cluster.submit()
    follower = Follower(cluster.server.client, experiment_id)
    record = cluster.wait_end(experiment_id, EXPERIMENT_TIMEOUT_S)
    assert record["status"] == "succeeded", record
    check_stream(follower)
    results = cluster.results_dir(experiment_id)
    print(f"reference experiment in {time.monotonic() - started:.1f} s")
    return Reference(comparable_rows(results), sorted(ledger_lines(results)))


def check_stream(follower: Follower) -> None:
    """Evaluations 1..N each once and in order, then `done`: the stream resumed with no gap or repeat."""
    events = follower.finish()
    counters = [event.data["evaluations_done"] for event in events if event.event == "evaluation"]
    assert counters == list(range(1, TOTAL_EVALUATIONS + 1)), counters
    assert events[-1].event == "done" and events[-1].data["status"] == "succeeded", events[-1]


def wait_point(
    cluster: Cluster, experiment_id: str, point: str, also: Callable[[], bool] | None = None
) -> None:
    """Wait (bounded) until the experiment is at the point; fail if it ended first."""

    def reached() -> bool:
        record = cluster.server.record(experiment_id)
        assert record is None or record["status"] not in ("succeeded", "failed", "cancelled"), (
            f"the experiment ended before the {point} fault: {record}"
        )
        rows = cluster.journal_rows(experiment_id)
        if point == EARLY:
            runner_up = bool(cluster.head.actors("ExperimentRunner"))
            return runner_up and rows == 0 and (also is None or also())
        # the first step journals both runs' initial populations: past it, checkpoints of later steps exist
        return rows > FIRST_STEP_ROWS and (also is None or also())

    wait_for(reached, POINT_TIMEOUT_S, f"the {point} point of {experiment_id}", pause_s=0.05)
    assert cluster.journal_rows(experiment_id) < TOTAL_EVALUATIONS, "too late: every step was journaled"


# ---- the faults ---------------------------------------------------------------------------------------


def fault_api(cluster: Cluster, signum: int) -> None:
    """The runner is a detached actor: the experiment goes on while the API is away; a new API serves it."""
    exited_after_s = cluster.server.send(signum, EXIT_WITHIN_S)
    print(f"evoprune serve exited {exited_after_s:.1f} s after signal {signum}")
    cluster.server.start()


def fault_redis(cluster: Cluster, signum: int) -> None:
    """Redis (no persistence) comes back empty after 2 s; the runner publishes the whole history again."""
    process = cluster.redis.process
    assert process is not None
    process.send_signal(signum)
    process.wait(timeout=EXIT_WITHIN_S)
    cluster.redis.process = None
    time.sleep(2.0)
    cluster.redis.start()


def fault_worker(cluster: Cluster, signum: int) -> None:
    """One evaluation worker dies; the dispatcher sends its masks to a replacement."""
    workers = cluster.worker.actors("PacedWorker") or cluster.head.actors("PacedWorker")
    assert workers, "no worker actor to signal"
    workers[0].send_signal(signum)
    workers[0].wait(timeout=EXIT_WITHIN_S)


def fault_runner(cluster: Cluster, signum: int) -> None:
    """The runner actor's process dies; Ray restarts it and it resumes from the checkpoint."""
    runners = cluster.head.actors("ExperimentRunner")
    assert len(runners) == 1, runners
    runners[0].send_signal(signum)
    runners[0].wait(timeout=EXIT_WITHIN_S)


def fault_head(cluster: Cluster, signum: int) -> None:
    """The head goes (and with it the runner): the cluster and the API come back, and the API resumes it.

    In a deployment the worker's raylet and the API's command exit by themselves once the head is gone
    (RAY_gcs_rpc_server_reconnect_timeout_s; deploy/ray_node_guard.py, tested by
    tests/deploy/test_head_restart.py) and their containers restart; here they are ended and started again.
    """
    cluster.head.send(signum)
    cluster.worker.stop()
    cluster.server.stop()
    cluster.start_ray()
    cluster.server.start()


FAULTS: dict[str, Callable[[Cluster, int], None]] = {
    "api": fault_api,
    "redis": fault_redis,
    "worker": fault_worker,
    "runner": fault_runner,
    "head": fault_head,
}


def needs_workers(cluster: Cluster) -> Callable[[], bool]:
    return lambda: bool(cluster.worker.actors("PacedWorker") or cluster.head.actors("PacedWorker"))


# each experiment gets two faults, one before the first step's checkpoint and one after many; the order of
# the signals alternates between parts, so each signal lands early on some and late on others. The other
# order of every part (ten experiments in all, about twice the time) runs with EVOPRUNE_FAULT_MATRIX=full.
KILL_EARLY = (("SIGKILL", EARLY), ("SIGTERM", LATE))
TERM_EARLY = (("SIGTERM", EARLY), ("SIGKILL", LATE))
ORDERS = {
    "api": KILL_EARLY,
    "redis": TERM_EARLY,
    "worker": KILL_EARLY,
    "runner": TERM_EARLY,
    "head": KILL_EARLY,
}
FULL = os.environ.get("EVOPRUNE_FAULT_MATRIX") == "full"
CASES = [
    pytest.param(component, order, id=f"{component}-{order[0][0]}-early-{order[1][0]}-late")
    for component, first in ORDERS.items()
    for order in ((first, TERM_EARLY if first is KILL_EARLY else KILL_EARLY) if FULL else (first,))
]


@pytest.mark.parametrize(("component", "order"), CASES)
def test_a_fault_early_and_late_loses_nothing(
    cluster: Cluster, reference: Reference, component: str, order: tuple[tuple[str, str], ...]
) -> None:
    started = time.monotonic()
    experiment_id = cluster.submit()
    follower = Follower(cluster.server.client, experiment_id)
    also = needs_workers(cluster) if component == "worker" else None
    for signal_name, point in order:
        wait_point(cluster, experiment_id, point, also)
        FAULTS[component](cluster, SIGNALS[signal_name])
        if component in ("api", "head"):
            wait_for(cluster.ready, POINT_TIMEOUT_S, "the API to be ready again", pause_s=0.5)

    record = cluster.wait_end(experiment_id, EXPERIMENT_TIMEOUT_S)
    assert record["status"] == "succeeded", f"{record}\n{cluster.server.log_tail()}"
    results: Path = cluster.results_dir(experiment_id)
    assert comparable_rows(results) == reference.rows
    trained = ledger_lines(results)
    assert len(trained) == len(set(trained)), "a mask was trained twice"
    assert sorted(trained) == reference.trained
    check_stream(follower)
    print(f"{component} {order}: {time.monotonic() - started:.1f} s")
