"""POST /experiments/{id}/analysis on a real local Ray: a detached actor analyses, the API lists the files."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.jobs_analysis import ANALYSIS
from tests.api.servers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]
# the actor's process starts, imports TensorFlow, re-trains the front and draws, on two shared cores
ANALYSIS_TIMEOUT_S = 300


def test_an_analysis_runs_on_ray_and_its_files_are_listed(ray_job_experiment):
    client, base = ray_job_experiment.client, ray_job_experiment.base
    results_dir = ray_job_experiment.results_dir
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
    wait_for(lambda: not ray_job_experiment.actor_exists(ANALYSIS), 60, "the analysis actor to exit")
    assert json.loads(ResultsLayout(results_dir).analysis_status.read_text())["status"] == "succeeded"
    assert client.get(f"{base}/artifacts").json()["analysis"]["status"] == "succeeded"
