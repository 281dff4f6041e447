"""Dispatch policies, tested without a cluster: chunking, the one retry decision, worker resources."""

import ray

from evoprune.coordinator.dispatch_policy import (
    FailureAction,
    FailureKind,
    classify_failure,
    decide_on_failure,
    default_worker_count,
    plan_chunks,
    resources_per_worker,
)


def test_plan_chunks_covers_the_batch_evenly():
    assert plan_chunks(20, 2) == [(0, 10), (10, 20)]
    assert plan_chunks(5, 3) == [(0, 2), (2, 3), (3, 5)]
    assert plan_chunks(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert plan_chunks(10, 0) == [(0, 10)]
    assert plan_chunks(0, 2) == []
    chunks = plan_chunks(1000, 2, max_per_call=256)
    assert len(chunks) == 4 and chunks[0][0] == 0 and chunks[-1][1] == 1000
    assert all(b - a <= 256 for a, b in chunks)


def test_failure_policy():
    lost, unavailable = FailureKind.WORKER_LOST, FailureKind.WORKER_UNAVAILABLE
    error = FailureKind.EVALUATION_ERROR
    assert decide_on_failure(lost, attempts=1).action is FailureAction.REPLACE
    assert decide_on_failure(unavailable, attempts=1).action is FailureAction.RETRY
    assert decide_on_failure(lost, attempts=4, max_attempts=4).action is FailureAction.GIVE_UP
    assert decide_on_failure(error, attempts=1).action is FailureAction.GIVE_UP
    assert classify_failure(ray.exceptions.ActorDiedError()) is lost
    assert classify_failure(ray.exceptions.ActorUnavailableError("restarting", None)) is unavailable
    assert classify_failure(ValueError("bug")) is error


def test_ray_does_not_retry_on_top_of_the_policy():
    from evoprune.workers.evaluation.actor import FeatureWorker

    options = FeatureWorker._default_options
    assert options["max_restarts"] == 0 and options["max_task_retries"] == 0


def test_resources_fit_the_cluster():
    assert resources_per_worker({"CPU": 2.0}, 1) == {"num_cpus": 1.0}
    assert resources_per_worker({"CPU": 2.0}, 4) == {"num_cpus": 0.5}
    assert resources_per_worker({"CPU": 16.0, "GPU": 1.0}, 2) == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert resources_per_worker({"CPU": 16.0, "GPU": 8.0}, 4) == {"num_cpus": 1.0, "num_gpus": 1.0}
    # no compute node has joined yet: the actors must wait for one, not land on the head or API node
    assert resources_per_worker({"CPU": 0.0}, 2) == {"num_cpus": 1.0}


def test_default_pool_is_one_worker_per_gpu_or_per_cpu_node():
    assert default_worker_count({"CPU": 32.0, "GPU": 4.0}, cpu_nodes=2) == 4
    assert default_worker_count({"CPU": 32.0}, cpu_nodes=2) == 2
    assert default_worker_count({"CPU": 2.0}) == 1
    assert default_worker_count({"CPU": 0.0}, cpu_nodes=0) == 1
