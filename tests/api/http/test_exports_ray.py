"""POST /experiments/{id}/exports on a real local Ray: a detached actor exports, the API serves the model."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from evoprune.coordinator.service.jobs_export import EXPORT
from tests.api.servers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]
# the actor's process starts, imports TensorFlow, re-trains one head, saves, reloads and checks it, then
# converts it to int8 TFLite and reloads both files in fresh processes
EXPORT_TIMEOUT_S = 600


def test_an_export_runs_on_ray_and_its_model_is_served(ray_job_experiment):
    client, base = ray_job_experiment.client, ray_job_experiment.base
    results_dir = ray_job_experiment.results_dir
    body = {"pick": "best-accuracy", "formats": ["tflite"], "quantize": "int8"}
    answer = client.post(f"{base}/exports", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "running" and answer.json()["name"] == "best-accuracy"

    def ended():
        state = client.get(f"{base}/exports").json()
        return state if state["status"] != "running" else None

    state = wait_for(ended, EXPORT_TIMEOUT_S, "the export to end", pause_s=1.0)
    assert state["status"] == "succeeded", state["error"]
    assert state["finished_at"] >= state["started_at"] >= state["requested_at"]
    names = {entry["name"] for entry in client.get(f"{base}/artifacts").json()["artifacts"]}
    assert {
        "export-best-accuracy.keras",
        "export-best-accuracy-int8.tflite",
        "export-best-accuracy.json",
    } <= names
    model = client.get(state["model_url"])
    assert model.status_code == 200
    # a .keras file is a zip of the model's config and weights
    with zipfile.ZipFile(io.BytesIO(model.content)) as archive:
        assert "config.json" in archive.namelist()
    report = client.get(state["report_url"]).json()
    assert report["check"]["exact"] or report["check"]["exported_accuracy"] > 0
    assert report["objectives"]["accuracy"] == state["objectives"]["accuracy"]
    assert report["pick"]["rule"] == "best-accuracy"
    # the int8 file, converted and reloaded by the actor's own child processes, is served too
    int8 = report["formats"]["tflite"]
    assert int8["quantization"] == "int8" and int8["runtime"]["name"].startswith("ai_edge_litert")
    tflite = client.get(state["file_urls"]["tflite"])
    assert tflite.status_code == 200 and len(tflite.content) == int8["bytes"]
    on_disk = results_dir / "exports" / "best-accuracy"
    assert json.loads((on_disk / "export.json").read_text())["mask"] == report["mask"]
    # the actor removes itself once it has written its outcome
    wait_for(lambda: not ray_job_experiment.actor_exists(EXPORT), 60, "the export actor to exit")
