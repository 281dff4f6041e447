"""The analysis routes on a real analysed results directory: list, download, refuse, start, report."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import time

import pyarrow.parquet as pq
import pytest
from PIL import Image

from evoprune.coordinator.analysis.analyze import analyze
from evoprune.coordinator.results.layout import ANALYSIS_DIR, ResultsLayout
from evoprune.coordinator.service.jobs import LOST_AFTER_S, JobBusyError
from evoprune.shared.store import ExperimentRecord
from tests.api.conftest import TOKEN, RecordingLauncher, make_client
from tests.coordinator.analysis.fixtures import session_results

RESULT_NAMES = {
    "config.yaml",
    "summary.json",
    "evaluations.parquet",
    "front.parquet",
    "front.png",
    "hypervolume.png",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny experiment (shared with the other analysis tests of the session), not analysed."""
    results_dir, _, features = session_results(tmp_path_factory.getbasetemp())
    return results_dir, features


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, finished):
    """The same experiment analysed once by the real `coordinator.analysis.analyze`."""
    source, features = finished
    results_dir = tmp_path_factory.mktemp("api-analysis") / "results"
    shutil.copytree(source, results_dir)
    index = analyze(results_dir, top=3, samples=2, feature_set=features)
    return results_dir, index


def add_experiment(client, source=None, status="succeeded"):
    """A record in the app's store whose results directory is a copy of `source` (None: no directory)."""
    experiment_id = secrets.token_hex(8)
    results_dir = client.app.state.settings.data_dir / "results" / experiment_id
    if source is not None:
        shutil.copytree(source, results_dir)
    record = ExperimentRecord(
        id=experiment_id, name="tiny", config={}, results_dir=str(results_dir), status=status
    )
    client.app.state.store.create(record)
    return experiment_id, results_dir


@pytest.fixture
def app_client(tmp_path, local_store):
    with make_client(tmp_path, local_store) as client:
        yield client


def test_an_analysed_experiment_lists_and_serves_every_file(app_client, analysed):
    source, index = analysed
    experiment_id, results_dir = add_experiment(app_client, source)
    answer = app_client.get(f"/experiments/{experiment_id}/artifacts")
    assert answer.status_code == 200
    listing = answer.json()
    assert listing["experiment_id"] == experiment_id
    # analysed by `evoprune analyze` (no status file): succeeded, from analysis/analysis.json
    assert listing["analysis"]["status"] == "succeeded" and listing["analysis"]["error"] is None
    artifacts = {item["name"]: item for item in listing["artifacts"]}
    assert {name for name, item in artifacts.items() if item["source"] == "results"} == RESULT_NAMES
    analysis_names = {entry["name"] for entry in index["artifacts"]}
    assert {name for name, item in artifacts.items() if item["source"] == "analysis"} == analysis_names
    assert artifacts["importance.png"]["kind"] == "image" and artifacts["importance.png"]["description"]
    assert artifacts["ensembles.parquet"]["media_type"] == "application/vnd.apache.parquet"
    for name, item in artifacts.items():
        folder = results_dir / ANALYSIS_DIR if item["source"] == "analysis" else results_dir
        expected = (folder / name).read_bytes()
        assert item["url"] == f"/experiments/{experiment_id}/artifacts/{name}"
        assert item["size_bytes"] == len(expected)
        served = app_client.get(item["url"])
        assert served.status_code == 200, name
        assert served.headers["content-type"].split(";")[0] == item["media_type"]
        assert served.content == expected
        disposition = "attachment" if item["kind"] == "table" else "inline"
        assert served.headers["content-disposition"] == f'{disposition}; filename="{name}"'
    with Image.open(io.BytesIO(app_client.get(artifacts["front_3d.png"]["url"]).content)) as image:
        assert image.format == "PNG"
    table = pq.read_table(io.BytesIO(app_client.get(artifacts["importance.parquet"]["url"]).content))
    assert table.num_rows > 0 and "frequency" in table.column_names


def test_unknown_and_unsafe_names_are_404_naming_the_available_files(app_client, analysed, tmp_path):
    source, _ = analysed
    experiment_id, results_dir = add_experiment(app_client, source)
    # an index that names files outside analysis/, links and files the API must not serve
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "x"}')
    (results_dir / ANALYSIS_DIR / "link.json").symlink_to(secret)
    index_path = results_dir / ANALYSIS_DIR / "analysis.json"
    index = json.loads(index_path.read_text())
    index["artifacts"] += [{"name": "../service-state.json"}, {"name": "link.json"}, {"name": "/etc/hosts"}]
    index_path.write_text(json.dumps(index))
    (results_dir / "service-state.json").write_text("{}")
    base = f"/experiments/{experiment_id}/artifacts"
    names = {item["name"] for item in app_client.get(base).json()["artifacts"]}
    assert "link.json" not in names and not any("/" in name or ".." in name for name in names)
    for name in (
        "nope.png",
        "link.json",
        "service-state.json",
        "analysis-status.json",
        "analysis",
        "state",
        ".analysis.previous",
        "%2e%2e",  # ".." itself never reaches the server: clients resolve it in the URL
        "..%2Fservice-state.json",
        "%2Fetc%2Fhosts",
        "x" * 300,
    ):
        answer = app_client.get(f"{base}/{name}")
        assert answer.status_code in (404, 422), (name, answer.status_code)
        assert answer.content != secret.read_bytes() and b"password" not in answer.content
        if answer.status_code == 404 and answer.json()["detail"] != "Not Found":
            assert "available:" in answer.json()["detail"] and "front.png" in answer.json()["detail"]
    unknown = app_client.get("/experiments/0123456789abcdef/artifacts")
    assert unknown.status_code == 404 and "no experiment" in unknown.json()["detail"]
    assert app_client.get("/experiments/0123456789abcdef/artifacts/front.png").status_code == 404


def test_before_any_analysis_the_list_holds_the_results_and_says_none(app_client, finished):
    source, _ = finished
    experiment_id, _ = add_experiment(app_client, source)
    listing = app_client.get(f"/experiments/{experiment_id}/artifacts").json()
    assert listing["analysis"] == {
        "status": "none", "error": None, "stage": None, "requested_at": None, "started_at": None,
        "finished_at": None, "top": None, "samples": None,
    }  # fmt: skip
    assert {item["name"] for item in listing["artifacts"]} == RESULT_NAMES
    queued, _ = add_experiment(app_client, None, status="queued")
    listing = app_client.get(f"/experiments/{queued}/artifacts").json()
    assert listing["artifacts"] == [] and listing["analysis"]["status"] == "none"
    missing = app_client.get(f"/experiments/{queued}/artifacts/front.png")
    assert missing.status_code == 404 and "available: none yet" in missing.json()["detail"]


def test_the_analysis_routes_need_the_token(tmp_path, local_store, finished):
    source, _ = finished
    with make_client(tmp_path, local_store, api_token=TOKEN) as client:
        experiment_id, _ = add_experiment(client, source)
        base = f"/experiments/{experiment_id}"
        good = {"Authorization": f"Bearer {TOKEN}"}
        for wrong in ({}, {"Authorization": "Bearer nope"}):
            assert client.get(f"{base}/artifacts", headers=wrong).status_code == 401
            assert client.get(f"{base}/artifacts/front.png", headers=wrong).status_code == 401
            assert client.post(f"{base}/analysis", headers=wrong).status_code == 401
        assert client.app.state.launcher.analyses == []
        assert client.get(f"{base}/artifacts", headers=good).status_code == 200
        assert client.get(f"{base}/artifacts/front.png", headers=good).status_code == 200
        assert client.post(f"{base}/analysis", headers=good).status_code == 202


def test_only_a_succeeded_experiment_with_its_results_can_be_analysed(app_client, finished):
    source, _ = finished
    for status in ("queued", "running", "failed", "cancelled"):
        experiment_id, _ = add_experiment(app_client, source, status=status)
        answer = app_client.post(f"/experiments/{experiment_id}/analysis")
        assert answer.status_code == 409
        assert f"is {status}" in answer.json()["detail"] and "succeeded" in answer.json()["detail"]
    gone, _ = add_experiment(app_client, None)
    answer = app_client.post(f"/experiments/{gone}/analysis")
    assert answer.status_code == 409 and "is not a directory" in answer.json()["detail"]
    unfinished, results_dir = add_experiment(app_client, source)
    (results_dir / "summary.json").unlink()
    answer = app_client.post(f"/experiments/{unfinished}/analysis")
    assert answer.status_code == 409 and "has not finished" in answer.json()["detail"]
    assert app_client.post("/experiments/0123456789abcdef/analysis").status_code == 404
    assert app_client.app.state.launcher.analyses == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"top": 0}, "top"), ({"top": 51}, "top"), ({"samples": 0}, "samples"), ({"samples": 17}, "samples"),
     ({"top": "many"}, "top"), ({"colour": "blue"}, "colour")],
)  # fmt: skip
def test_out_of_bounds_options_are_a_422_naming_the_field(app_client, finished, body, field):
    experiment_id, _ = add_experiment(app_client, finished[0])
    answer = app_client.post(f"/experiments/{experiment_id}/analysis", json=body)
    assert answer.status_code == 422
    assert any(item["loc"] == ["body", field] for item in answer.json()["detail"]), answer.json()
    assert app_client.app.state.launcher.analyses == []


def test_a_started_analysis_runs_alone_and_reports_its_state(app_client, finished):
    experiment_id, results_dir = add_experiment(app_client, finished[0])
    launcher = app_client.app.state.launcher
    base = f"/experiments/{experiment_id}"
    answer = app_client.post(f"{base}/analysis", json={"top": 5, "samples": 2})
    assert answer.status_code == 202
    assert answer.headers["location"] == f"{base}/artifacts"
    started = answer.json()
    assert started["status"] == "running" and started["top"] == 5 and started["samples"] == 2
    assert started["stage"] and started["requested_at"]
    (spec,) = launcher.analyses
    assert (spec.experiment_id, spec.results_dir, spec.top, spec.samples) == (
        experiment_id, str(results_dir), 5, 2,
    )  # fmt: skip
    assert app_client.get(f"{base}/artifacts").json()["analysis"]["status"] == "running"
    second = app_client.post(f"{base}/analysis")
    assert second.status_code == 409 and "already running" in second.json()["detail"]
    assert len(launcher.analyses) == 1
    # the actor reports its end in the status file
    status = json.loads(ResultsLayout(results_dir).analysis_status.read_text())
    ResultsLayout(results_dir).analysis_status.write_text(
        json.dumps({**status, "status": "failed", "error": "boom", "finished_at": time.time()})
    )
    launcher.analysing.clear()
    failed = app_client.get(f"{base}/artifacts").json()["analysis"]
    assert failed["status"] == "failed" and failed["error"] == "boom" and failed["stage"] is None
    # defaults without a body
    assert app_client.post(f"{base}/analysis").status_code == 202
    assert (launcher.analyses[-1].top, launcher.analyses[-1].samples) == (10, 4)


def test_a_running_analysis_whose_actor_is_gone_is_reported_failed(app_client, finished):
    experiment_id, results_dir = add_experiment(app_client, finished[0])
    base = f"/experiments/{experiment_id}"
    assert app_client.post(f"{base}/analysis").status_code == 202
    launcher = app_client.app.state.launcher
    launcher.analysing.clear()  # the actor's process died
    # within the grace period the status file is believed: the actor may not be registered yet
    assert app_client.get(f"{base}/artifacts").json()["analysis"]["status"] == "running"
    status = json.loads(ResultsLayout(results_dir).analysis_status.read_text())
    status["requested_at"] -= LOST_AFTER_S + 1
    ResultsLayout(results_dir).analysis_status.write_text(json.dumps(status))
    analysis = app_client.get(f"{base}/artifacts").json()["analysis"]
    assert analysis["status"] == "failed" and "actor is gone" in analysis["error"]
    assert app_client.post(f"{base}/analysis").status_code == 202


def test_launch_failures_are_reported(tmp_path, local_store, finished):
    class Unreachable(RecordingLauncher):
        def launch_job(self, spec):
            raise ConnectionError("no cluster at 10.0.0.1:6379")

    with make_client(tmp_path, local_store, Unreachable()) as client:
        experiment_id, _ = add_experiment(client, finished[0])
        answer = client.post(f"/experiments/{experiment_id}/analysis")
        assert answer.status_code == 503 and "no cluster" in answer.json()["detail"]
        analysis = client.get(f"/experiments/{experiment_id}/artifacts").json()["analysis"]
        assert analysis["status"] == "failed" and "no cluster" in analysis["error"]

    class Busy(RecordingLauncher):
        def launch_job(self, spec):
            raise JobBusyError("an actor of that name exists")

    with make_client(tmp_path, local_store, Busy()) as client:
        experiment_id, results_dir = add_experiment(client, finished[0])
        answer = client.post(f"/experiments/{experiment_id}/analysis")
        assert answer.status_code == 409 and "try again" in answer.json()["detail"]
        # the status is as before the request
        assert not ResultsLayout(results_dir).analysis_status.exists()
        assert client.get(f"/experiments/{experiment_id}/artifacts").json()["analysis"]["status"] == "none"


@pytest.mark.parametrize("linked", ["analysis", "exports"])
def test_a_results_folder_replaced_by_a_link_is_not_served(app_client, analysed, tmp_path, linked):
    from evoprune.coordinator.results.layout import ResultsLayout

    source, _ = analysed
    experiment_id, results_dir = add_experiment(app_client, source)
    layout = ResultsLayout(results_dir)
    elsewhere = tmp_path / "elsewhere"
    if linked == "analysis":
        # the folder moved out of the results directory, a link left in its place
        shutil.move(layout.analysis, elsewhere)
        layout.analysis.symlink_to(elsewhere, target_is_directory=True)
        probe = "importance.png"
    else:
        (elsewhere / "knee").mkdir(parents=True)
        elsewhere_layout = ResultsLayout(tmp_path / "fake-results")
        for path in (elsewhere_layout.export_model("knee"), elsewhere_layout.export_report("knee")):
            (elsewhere / "knee" / path.name).write_text('{"secret": "x"}')
        layout.exports.symlink_to(elsewhere, target_is_directory=True)
        probe = "export-knee.json"
    base = f"/experiments/{experiment_id}/artifacts"
    names = {item["name"] for item in app_client.get(base).json()["artifacts"]}
    assert probe not in names and "front.png" in names
    answer = app_client.get(f"{base}/{probe}")
    assert answer.status_code == 404, answer.text
    assert app_client.get(f"{base}/front.png").status_code == 200
