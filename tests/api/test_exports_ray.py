"""POST /experiments/{id}/exports on a real local Ray: a detached actor exports, the API serves the model."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import zipfile
from pathlib import Path

import pytest
import ray
from fastapi.testclient import TestClient

from evoprune.api.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.placement import results_node_resources
from evoprune.coordinator.service.actors import RAY_NAMESPACE, export_actor_name
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore
from tests.api.servers import wait_for
from tests.coordinator.analysis.fixtures import session_results

pytestmark = [pytest.mark.slow, pytest.mark.ray]
# the actor's process starts, imports TensorFlow, re-trains one head, saves, reloads and checks it
EXPORT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, resources=results_node_resources(), include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _actor_exists(experiment_id):
    try:
        ray.get_actor(export_actor_name(experiment_id), namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    return True


def test_an_export_runs_on_ray_and_its_model_is_served(tmp_path_factory, tmp_path, local_ray):
    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    settings = Settings(data_dir=tmp_path / "data", recover_on_start=False)
    store = LocalStore(settings.data_dir)
    experiment_id = secrets.token_hex(8)
    results_dir = settings.data_dir / "results" / experiment_id
    shutil.copytree(source, results_dir)
    store.create(
        ExperimentRecord(
            id=experiment_id, name="tiny", config={}, results_dir=str(results_dir), status="succeeded"
        )
    )
    base = f"/experiments/{experiment_id}"
    # the real launcher: the export as a detached actor on the Ray this process joined
    with TestClient(create_app(settings, store)) as client:
        answer = client.post(f"{base}/exports", json={"pick": "best-accuracy"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "running" and answer.json()["name"] == "best-accuracy"

        def ended():
            state = client.get(f"{base}/exports").json()
            return state if state["status"] != "running" else None

        state = wait_for(ended, EXPORT_TIMEOUT_S, "the export to end", pause_s=1.0)
        assert state["status"] == "succeeded", state["error"]
        assert state["finished_at"] >= state["started_at"] >= state["requested_at"]
        names = {entry["name"] for entry in client.get(f"{base}/artifacts").json()["artifacts"]}
        assert {"export-best-accuracy.keras", "export-best-accuracy.json"} <= names
        model = client.get(state["model_url"])
        assert model.status_code == 200
        # a .keras file is a zip of the model's config and weights
        with zipfile.ZipFile(io.BytesIO(model.content)) as archive:
            assert "config.json" in archive.namelist()
        report = client.get(state["report_url"]).json()
        assert report["check"]["exact"] or report["check"]["exported_accuracy"] > 0
        assert report["objectives"]["accuracy"] == state["objectives"]["accuracy"]
        assert report["pick"]["rule"] == "best-accuracy"
        on_disk = Path(results_dir) / "exports" / "best-accuracy"
        assert json.loads((on_disk / "export.json").read_text())["mask"] == report["mask"]
        # the actor removes itself once it has written its outcome
        wait_for(lambda: not _actor_exists(experiment_id), 60, "the export actor to exit")
