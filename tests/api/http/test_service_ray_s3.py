"""The service on a real local Ray and Redis with its results root on object storage (moto on loopback)."""

from __future__ import annotations

import uuid

import pytest
import ray
from fastapi.testclient import TestClient

from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.placement import results_node_resources
from evoprune.shared.storage import storage_path
from evoprune.shared.store_redis import RedisStore
from tests import s3_server
from tests.api.conftest import TINY_CONFIG, redis_url
from tests.api.http.test_results_on_s3 import RESULT_NAMES
from tests.api.servers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.redis, pytest.mark.s3]
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
EXPERIMENT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def ray_reaching_s3(s3_environment):
    """A local Ray started once the store's variables are set: its runners and workers inherit them."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, resources=results_node_resources(), include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_a_runner_actor_writes_its_results_to_object_storage(tmp_path, bucket, ray_reaching_s3, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written under it
    root = f"s3://{bucket}/results"
    prefix = f"evoprune-test-{uuid.uuid4().hex}"
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url(),
        redis_prefix=prefix,
        results_root=root,
        workers_per_experiment=1,
    )
    try:
        with TestClient(create_app(settings)) as client:
            answer = client.post("/experiments", json={"config": TINY_CONFIG})
            assert answer.status_code == 201, answer.text
            experiment_id = answer.json()["id"]

            def ended():
                current = client.get(f"/experiments/{experiment_id}").json()
                return current if current["status"] in ("succeeded", "failed", "cancelled") else None

            final = wait_for(ended, EXPERIMENT_TIMEOUT_S, f"experiment {experiment_id} to end", pause_s=0.5)
            assert final["status"] == "succeeded", final
            assert final["results_dir"] == f"{root}/{experiment_id}"
            results = storage_path(final["results_dir"])
            listed = client.get(f"/experiments/{experiment_id}/artifacts").json()["artifacts"]
            assert [item["name"] for item in listed] == RESULT_NAMES
            summary = client.get(f"/experiments/{experiment_id}/artifacts/summary.json").json()
            assert summary["aggregate"]["evaluations"] == 24
            assert (results / "state" / "checkpoint.json").is_file() and (
                results / "service-state.json"
            ).is_file()
            assert client.get(f"/experiments/{experiment_id}/evaluations").json()["total"] == 24
            assert not (tmp_path / "data" / "results").exists() and not (tmp_path / "s3:").exists()

            def runner_gone():
                purged = client.delete(f"/experiments/{experiment_id}", params={"purge": "true"})
                return purged if purged.status_code != 409 else None  # its runner still finishing

            assert wait_for(runner_gone, 60, "the runner to go", pause_s=0.5).status_code == 204
            assert not results.exists()
    finally:
        RedisStore(redis_url(), prefix=prefix).delete_all()
