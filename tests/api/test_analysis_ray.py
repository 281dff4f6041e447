"""POST /experiments/{id}/analysis on a real local Ray: a detached actor analyses, the API lists the files."""

from __future__ import annotations

import io
import json
import secrets
import shutil

import pytest
import ray
from fastapi.testclient import TestClient
from PIL import Image

from evoprune.api.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.placement import results_node_resources
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.coordinator.service.actors import RAY_NAMESPACE, analysis_actor_name
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore
from tests.api.servers import wait_for
from tests.coordinator.analysis.fixtures import session_results

pytestmark = [pytest.mark.slow, pytest.mark.ray]
# the actor's process starts, imports TensorFlow, re-trains the front and draws, on two shared cores
ANALYSIS_TIMEOUT_S = 300


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
        ray.get_actor(analysis_actor_name(experiment_id), namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    return True


def test_an_analysis_runs_on_ray_and_its_files_are_listed(tmp_path_factory, tmp_path, local_ray):
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
    # the real launcher: runners and analyses as detached actors on the Ray this process joined
    with TestClient(create_app(settings, store)) as client:
        answer = client.post(f"{base}/analysis", json={"top": 3, "samples": 2})
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "running"
        again = client.post(f"{base}/analysis")
        assert again.status_code == 409, again.text

        def ended():
            listing = client.get(f"{base}/artifacts").json()
            return listing if listing["analysis"]["status"] != "running" else None

        listing = wait_for(ended, ANALYSIS_TIMEOUT_S, "the analysis to end", pause_s=1.0)
        analysis = listing["analysis"]
        assert analysis["status"] == "succeeded", analysis["error"]
        assert (analysis["top"], analysis["samples"]) == (3, 2)
        assert analysis["finished_at"] >= analysis["started_at"] >= analysis["requested_at"]
        images = [a for a in listing["artifacts"] if a["source"] == "analysis" and a["kind"] == "image"]
        assert {"front_3d.png", "importance.png", "ensembles.png"} <= {a["name"] for a in images}
        png = client.get(images[0]["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as image:
            assert image.format == "PNG"
        index = client.get(f"{base}/artifacts/analysis.json").json()
        assert len(index["top"]) == 3 and index["heatmaps"]["images"] == 2
        # the actor removes itself once it has written its outcome
        wait_for(lambda: not _actor_exists(experiment_id), 60, "the analysis actor to exit")
        assert json.loads(ResultsLayout(results_dir).analysis_status.read_text())["status"] == "succeeded"
        assert client.get(f"{base}/artifacts").json()["analysis"]["status"] == "succeeded"
