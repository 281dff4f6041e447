"""The service end to end on a real local Ray and a real Redis: tiny experiments on sklearn digits."""

from __future__ import annotations

import io
import json
import time
import uuid

import pyarrow.parquet as pq
import pytest
import ray
from fastapi.testclient import TestClient

from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.placement import results_node_resources
from evoprune.coordinator.service.actors import RAY_NAMESPACE, actor_name
from evoprune.shared.store_redis import RedisStore
from tests.api.conftest import TINY_CONFIG, redis_url
from tests.api.servers import PrivateRedis, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.redis]
EXPERIMENT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        # four logical CPUs on two cores: three experiments' workers fit side by side
        ray.init(num_cpus=4, resources=results_node_resources(), include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def service(tmp_path, local_ray):
    prefix = f"evoprune-test-{uuid.uuid4().hex}"
    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url(), redis_prefix=prefix)
    with TestClient(create_app(settings)) as client:
        yield client
    RedisStore(redis_url(), prefix=prefix).delete_all()


def experiment(client, experiment_id):
    answer = client.get(f"/experiments/{experiment_id}")
    return answer.json() if answer.status_code == 200 else None


def wait_status(client, experiment_id, statuses, timeout_s=EXPERIMENT_TIMEOUT_S):
    def reached():
        current = experiment(client, experiment_id)
        return current if current and current["status"] in statuses else None

    return wait_for(reached, timeout_s, f"experiment {experiment_id} to reach {statuses}", pause_s=0.5)


def follow(client, experiment_id, headers=None):
    messages, current = [], {}
    with client.stream("GET", f"/experiments/{experiment_id}/events", headers=headers or {}) as answer:
        for line in answer.iter_lines():
            if not line:
                if current:
                    messages.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return messages


def test_three_experiments_share_the_cluster_and_all_finish(service):
    ids = []
    for seed in range(3):
        config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "seed": seed}}
        answer = service.post("/experiments", json={"config": config, "name": f"tiny-{seed}"})
        assert answer.status_code == 201
        ids.append(answer.json()["id"])
    messages = follow(service, ids[0])
    kinds = [m["event"] for m in messages]
    assert kinds[0] == "snapshot" and kinds[-1] == "done" and messages[-1]["data"]["status"] == "succeeded"
    assert kinds.count("evaluation") == 24 - messages[0]["data"]["experiment"]["evaluations_done"]
    for experiment_id in ids:
        final = wait_status(service, experiment_id, {"succeeded", "failed", "cancelled"})
        assert final["status"] == "succeeded", final["error"]
        assert final["evaluations_done"] == 24 and final["mask_length"] == 64 and final["hypervolume"] > 0
        assert all(run["finished"] and run["evaluations_done"] == 12 for run in final["runs"])
        front = service.get(f"/experiments/{experiment_id}/front").json()
        assert {p["run"] for p in front["points"]} == {-1, 0, 1}
        assert front["hypervolume_history"][-1]["hypervolume"] == pytest.approx(final["hypervolume"])
        evaluations = service.get(f"/experiments/{experiment_id}/evaluations").json()
        assert evaluations["total"] == 24
        parquet = service.get(f"/experiments/{experiment_id}/evaluations?format=parquet")
        assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 24
    # each experiment's runner actor removes itself when it is done
    for experiment_id in ids:
        wait_for(lambda i=experiment_id: not _runner_exists(i), 30, "the runner actor to exit")


def _runner_exists(experiment_id):
    try:
        ray.get_actor(actor_name(experiment_id), namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    return True


def test_cancel_mid_run_stops_dispatch_and_keeps_the_results(service):
    config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "max_evaluations": 400, "runs": 1}}
    experiment_id = service.post("/experiments", json={"config": config}).json()["id"]
    wait_for(
        lambda: (experiment(service, experiment_id) or {}).get("evaluations_done", 0) >= 8, 240, "evaluations"
    )
    assert service.delete(f"/experiments/{experiment_id}").status_code == 202
    asked = time.monotonic()
    messages = follow(service, experiment_id)
    assert messages[-1]["event"] == "done" and messages[-1]["data"]["status"] == "cancelled"
    assert time.monotonic() - asked < 20
    final = experiment(service, experiment_id)
    assert final["status"] == "cancelled" and 8 <= final["evaluations_done"] < 400
    rows = pq.read_table(f"{final['results_dir']}/evaluations.parquet").num_rows
    assert rows == final["evaluations_done"]
    wait_for(lambda: not _runner_exists(experiment_id), 30, "the runner actor to exit")
    time.sleep(2)
    assert experiment(service, experiment_id)["evaluations_done"] == rows
    assert service.delete(f"/experiments/{experiment_id}").status_code == 409


def test_a_redis_restart_loses_no_evaluation(tmp_path, local_ray):
    server = PrivateRedis()
    server.start()
    try:
        settings = Settings(data_dir=tmp_path / "data", redis_url=server.url)
        config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "max_evaluations": 40, "runs": 1}}
        with TestClient(create_app(settings)) as client:
            experiment_id = client.post("/experiments", json={"config": config}).json()["id"]
            wait_for(
                lambda: (experiment(client, experiment_id) or {}).get("evaluations_done", 0) >= 8,
                240,
                "evals",
            )
            server.stop()
            assert client.get(f"/experiments/{experiment_id}").status_code == 503
            time.sleep(3)
            server.start()  # empty: no persistence
            final = wait_status(client, experiment_id, {"succeeded", "failed", "cancelled"})
            assert final["status"] == "succeeded", final["error"]
            assert final["evaluations_done"] == 40
            everything = follow(client, experiment_id, {"Last-Event-ID": "0"})
            evaluations = [m["data"] for m in everything if m["event"] == "evaluation"]
            assert [e["evaluations_done"] for e in evaluations] == list(range(1, 41))
            assert [int(m["id"].split("-")[0]) for m in everything if "id" in m] == list(
                range(1, len(everything) + 1)
            )
            parquet = pq.read_table(f"{final['results_dir']}/evaluations.parquet").to_pylist()
            assert sorted((e["step"], e["mask"]) for e in evaluations) == sorted(
                (r["step"], r["mask"]) for r in parquet
            )
    finally:
        server.stop()
