"""POST /experiments/{id}/exports: bad requests answer 4xx naming the field; good ones start the actor."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evoprune.api.settings import Settings
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import TOKEN, RecordingLauncher, make_client
from tests.coordinator.analysis.fixtures import session_results

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def finished(tmp_path_factory, tmp_path):
    """A client, its launcher, and a succeeded experiment with real results (copied: exports write there)."""
    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    settings = Settings(data_dir=tmp_path / "data")
    store = LocalStore(settings.data_dir)
    launcher = RecordingLauncher()
    experiment_id = secrets.token_hex(8)
    results_dir = settings.data_dir / "results" / experiment_id
    shutil.copytree(source, results_dir)
    record = ExperimentRecord(
        id=experiment_id, name="tiny", config={}, results_dir=str(results_dir), status="succeeded"
    )
    store.create(record)
    with make_client(tmp_path, store, launcher) as client:
        yield client, launcher, record


def _post(client, record, body):
    return client.post(f"/experiments/{record.id}/exports", json=body, headers=HEADERS)


def test_a_pick_starts_one_export_actor_and_reports_it_running(finished):
    client, launcher, record = finished
    answer = _post(client, record, {"pick": "knee", "run": 1, "kind": "archive"})
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == f"/experiments/{record.id}/exports"
    body = answer.json()
    assert body["status"] == "running" and body["name"] == "knee-run1" and body["model_url"] is None
    assert body["options"] == {
        "mask": None,
        "rule": "knee",
        "min_accuracy": None,
        "run": 1,
        "kind": "archive",
        "formats": ["keras"],
        "quantize": None,
    }
    (spec,) = launcher.exports
    assert (spec.rule, spec.run, spec.kind, spec.results_dir) == ("knee", 1, "archive", record.results_dir)
    # one export of an experiment at a time
    again = _post(client, record, {"pick": "best-accuracy"})
    assert again.status_code == 409 and "already running" in again.json()["detail"]
    assert client.get(f"/experiments/{record.id}/exports", headers=HEADERS).json()["status"] == "running"


def test_formats_and_a_quantisation_travel_to_the_export_actor(finished):
    client, launcher, record = finished
    answer = _post(client, record, {"pick": "knee", "formats": ["onnx", "tflite"], "quantize": "int8"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["options"]["formats"] == ["keras", "tflite", "onnx"]
    (spec,) = launcher.exports
    assert (spec.formats, spec.quantize) == (("keras", "tflite", "onnx"), "int8")
    assert spec.request().formats == spec.formats


def test_a_mask_from_the_evaluations_is_exported_under_its_own_name(finished):
    client, launcher, record = finished
    mask = pq.read_table(ResultsLayout(Path(record.results_dir)).evaluations).column("mask")[0].as_py()
    answer = _post(client, record, {"mask": mask.upper()})
    assert answer.status_code == 202, answer.text
    assert answer.json()["name"] == f"mask-{mask[:12]}" and launcher.exports[0].mask == mask


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"pick": "best-accuracy", "run": 7}, "run", "run 7 has no front"),
        ({"mask": "abc"}, "mask", "hex digits"),
        ({"pick": "smallest", "min_accuracy": 1.0}, "min_accuracy", ""),
        ({"pick": "smallest"}, "min_accuracy", "needs min_accuracy"),
        ({"pick": "knee", "min_accuracy": 0.5}, "min_accuracy", "only to pick smallest"),
        ({"pick": "knee", "mask": "00"}, "mask", "either mask or pick"),
        ({}, "mask", "either mask or pick"),
        ({"mask": "zz"}, "mask", "pattern"),
        ({"pick": "largest"}, "pick", ""),
        ({"pick": "knee", "kind": "all"}, "kind", ""),
        ({"pick": "knee", "formats": ["tflit"]}, "formats", ""),
        ({"pick": "knee", "formats": []}, "formats", ""),
        ({"pick": "knee", "quantize": "int8"}, "quantize", "add tflite to formats"),
        ({"pick": "knee", "formats": ["onnx"], "quantize": "float16"}, "quantize", "add tflite"),
        ({"pick": "knee", "formats": ["tflite"], "quantize": "int4"}, "quantize", ""),
    ],
)
def test_bad_requests_answer_422_naming_the_field(finished, body, field, words):
    client, launcher, record = finished
    answer = _post(client, record, body)
    assert answer.status_code == 422, answer.text
    assert field in json.dumps(answer.json()) and words in json.dumps(answer.json()), answer.text
    assert launcher.exports == []
    assert not ResultsLayout(Path(record.results_dir)).export_status.exists()


def test_an_unknown_mask_is_refused_since_there_is_no_accuracy_to_reproduce(finished):
    client, _, record = finished
    mask = pq.read_table(ResultsLayout(Path(record.results_dir)).evaluations).column("mask")[0].as_py()
    other = ("1" if mask[0] == "0" else "0") + mask[1:]
    known = set(pq.read_table(ResultsLayout(Path(record.results_dir)).evaluations).column("mask").to_pylist())
    if other in known:
        pytest.skip("the flipped mask happens to have been evaluated")
    answer = _post(client, record, {"mask": other})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("mask: ")


def test_an_experiment_that_has_not_succeeded_is_refused_with_409(finished):
    client, launcher, record = finished
    running = ExperimentRecord(
        id=secrets.token_hex(8), name="tiny", config={}, results_dir=record.results_dir, status="running"
    )
    client.app.state.store.create(running)
    answer = _post(client, running, {"pick": "best-accuracy"})
    assert answer.status_code == 409 and "only a succeeded experiment" in answer.json()["detail"]
    assert launcher.exports == []


def test_a_finished_export_is_listed_and_its_files_served(finished):
    client, _, record = finished
    folder = ResultsLayout(Path(record.results_dir)).root / "exports" / "knee"
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"PK\x03\x04 not a real model")
    listing = client.get(f"/experiments/{record.id}/artifacts", headers=HEADERS).json()["artifacts"]
    # no report yet: the export is still being checked, so its model is not offered
    assert not [entry for entry in listing if entry["source"] == "export"]
    (folder / "export.json").write_text(json.dumps({"mask": "00"}))
    ResultsLayout(Path(record.results_dir)).export_status.write_text(
        json.dumps(
            {"status": "succeeded", "name": "knee", "objectives": {"accuracy": 0.5}, "finished_at": 1.0}
        )
    )
    listing = client.get(f"/experiments/{record.id}/artifacts", headers=HEADERS).json()["artifacts"]
    exported = {entry["name"]: entry for entry in listing if entry["source"] == "export"}
    assert set(exported) == {"export-knee.keras", "export-knee.json"}
    assert exported["export-knee.keras"]["kind"] == "model"
    status = client.get(f"/experiments/{record.id}/exports", headers=HEADERS).json()
    assert status["model_url"] == exported["export-knee.keras"]["url"] and status["objectives"] == {
        "accuracy": 0.5
    }
    download = client.get(status["model_url"], headers=HEADERS)
    assert download.status_code == 200 and download.content.startswith(b"PK")
    assert download.headers["content-disposition"] == 'attachment; filename="export-knee.keras"'

    # the other formats' files beside it are listed and served too (a SavedModel folder is not)
    (folder / "model-int8.tflite").write_bytes(b"TFL3 not a real model")
    (folder / "model.onnx").write_bytes(b"not a real onnx model")
    (folder / "model.saved_model").mkdir()
    listing = client.get(f"/experiments/{record.id}/artifacts", headers=HEADERS).json()["artifacts"]
    exported = {entry["name"]: entry for entry in listing if entry["source"] == "export"}
    assert set(exported) == {
        "export-knee.keras",
        "export-knee-int8.tflite",
        "export-knee.onnx",
        "export-knee.json",
    }
    status = client.get(f"/experiments/{record.id}/exports", headers=HEADERS).json()
    assert status["file_urls"] == {
        "keras": exported["export-knee.keras"]["url"],
        "tflite": exported["export-knee-int8.tflite"]["url"],
        "onnx": exported["export-knee.onnx"]["url"],
    }
    download = client.get(status["file_urls"]["tflite"], headers=HEADERS)
    assert download.status_code == 200 and download.content == b"TFL3 not a real model"
