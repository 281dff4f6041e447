"""POST /experiments/{id}/exports with the results root on object storage (moto's S3 server on loopback)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.results.picks import front_rows, pick
from evoprune.shared.storage import storage_path, upload_folder
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore
from tests import s3_server
from tests.api.conftest import TOKEN, RecordingLauncher, make_client
from tests.api.http.test_results_on_s3 import WAIT_S, app_client
from tests.coordinator.analysis.fixtures import session_results

pytestmark = pytest.mark.s3
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket


@pytest.mark.slow  # 35 s on 2 cores alone (the tiny experiment, then the export's re-training and checks)
def test_an_export_over_http_reads_and_writes_object_storage(tmp_path_factory, tmp_path, bucket, monkeypatch):
    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    local = tmp_path_factory.mktemp("export-http-s3") / "results"
    shutil.copytree(source, local, ignore=shutil.ignore_patterns("exports", "analysis"))
    knee = pick(front_rows(pq.read_table(local / "front.parquet").to_pylist()), "knee")
    monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written under it
    root = f"s3://{bucket}/results"
    experiment_id = "0123456789abcdef"
    results = storage_path(f"{root}/{experiment_id}")
    upload_folder(local, results, last="summary.json")
    with app_client(tmp_path, root) as client:
        record = ExperimentRecord(
            id=experiment_id, name="tiny", config={}, results_dir=str(results), status="succeeded"
        )
        client.app.state.store.create(record)
        base = f"/experiments/{experiment_id}"
        started = client.post(f"{base}/exports", json={"pick": "knee"})
        assert started.status_code == 202, started.text
        assert started.json()["name"] == "knee"
        client.app.state.launcher.threads[f"export-{experiment_id}"].join(timeout=WAIT_S * 5)
        state = client.get(f"{base}/exports").json()
        assert state["status"] == "succeeded", state
        assert state["objectives"]["accuracy"] == knee["accuracy"]
        assert (results / "export-status.json").is_file()
        folder = results / "exports" / "knee"
        assert sorted(path.name for path in folder.iterdir()) == ["export.json", "model.keras"]

        listed = client.get(f"{base}/artifacts").json()["artifacts"]
        exported = [item for item in listed if item["source"] == "export"]
        assert [item["name"] for item in exported] == ["export-knee.keras", "export-knee.json"]
        assert [item["url"] for item in exported] == [state["model_url"], state["report_url"]]
        for item, name in zip(exported, ["model.keras", "export.json"], strict=True):
            served = client.get(item["url"])
            assert served.status_code == 200 and served.content == (folder / name).read_bytes(), name
        report = json.loads((folder / "export.json").read_text())
        assert report["model"] == f"{results}/exports/knee/model.keras" and report["mask"] == knee["mask"]
    # nothing went to a local folder: not the results, nor the status file, nor a model
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "data" / "results").exists()
    assert not list(tmp_path.rglob("*-status.json")) and not list(tmp_path.rglob("*.keras"))


def test_export_requests_on_object_storage_are_checked_there(tmp_path_factory, tmp_path, bucket, monkeypatch):
    # the request check reads the results from the bucket (it answered 422 with a mangled s3:/ path)
    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    local = tmp_path_factory.mktemp("export-request-s3") / "results"
    shutil.copytree(source, local, ignore=shutil.ignore_patterns("exports", "analysis"))
    monkeypatch.chdir(tmp_path)
    results = storage_path(f"s3://{bucket}/results/0123456789abcdef")
    upload_folder(local, results, last="summary.json")
    store = LocalStore(tmp_path / "data")
    record = ExperimentRecord(
        id="0123456789abcdef", name="tiny", config={}, results_dir=str(results), status="succeeded"
    )
    store.create(record)
    launcher = RecordingLauncher()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with make_client(tmp_path, store, launcher) as client:
        url = f"/experiments/{record.id}/exports"
        refused = client.post(url, json={"pick": "best-accuracy", "run": 7}, headers=headers)
        assert refused.status_code == 422 and "run 7 has no front" in refused.text, refused.text
        assert not (results / "export-status.json").exists()
        answer = client.post(url, json={"ensemble": "50-100"}, headers=headers)
        assert answer.status_code == 202, answer.text
        assert answer.json()["name"] == "ensemble-mean-50-100"
        (spec,) = launcher.exports
        assert spec.results_dir == str(results) and spec.ensemble == "50-100"
        status = json.loads((results / "export-status.json").read_text())
        assert status["status"] == "running" and status["name"] == "ensemble-mean-50-100"
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.rglob("*-status.json"))
