"""`evoprune export s3://...`: results read from object storage (moto's server), the export uploaded there."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evoprune.api.cli.main import main
from evoprune.coordinator.analysis.ensembles import ensemble_table
from evoprune.coordinator.analysis.inputs import read_results
from evoprune.coordinator.results.picks import front_rows, pick
from evoprune.shared.parquet_files import write_parquet
from evoprune.shared.storage import storage_path, upload_folder
from evoprune.workers.evaluation.retrain import retrain
from tests import s3_server
from tests.coordinator.analysis.fixtures import session_results

pytestmark = pytest.mark.s3
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
ZIP_SIGNATURE = b"PK\x03\x04"  # a .keras file is a zip archive


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The tiny experiment with the analysis's ensemble table beside it, and its window of most members."""
    source, config, features = session_results(tmp_path_factory.getbasetemp())
    results_dir = tmp_path_factory.mktemp("export-s3") / "results"
    shutil.copytree(source, results_dir, ignore=shutil.ignore_patterns("exports", "analysis"))
    inputs = read_results(results_dir)
    models = retrain(features, config, inputs.masks, keep_weights=False)
    (results_dir / "analysis").mkdir()
    rows = ensemble_table(inputs, features, models, results_dir / "analysis")
    row = max(rows, key=lambda row: (row["members"], row["window_lower"]))
    assert row["members"] >= 2
    return results_dir, row


@pytest.fixture
def remote(analysed, bucket, tmp_path, monkeypatch):
    """The results uploaded to a fresh bucket (summary.json last, as a run writes it); the URI."""
    uri = f"s3://{bucket}/runs/tiny"
    upload_folder(analysed[0], storage_path(uri), last="summary.json")
    # the working directory stays empty: a URI taken for a local path would be written under it
    monkeypatch.chdir(tmp_path)
    return uri


def objects_under(uri):
    prefix = storage_path(uri)
    return sorted(path.name for path in prefix.iterdir())


def test_a_pick_is_exported_from_object_storage_into_it(analysed, remote, tmp_path, capsys):
    knee = pick(front_rows(pq.read_table(analysed[0] / "front.parquet").to_pylist()), "knee")
    folder = f"{remote}/exports/knee"
    # left by an earlier export of that name: replaced, not kept beside the new files
    (storage_path(folder) / "stale.tflite").write_bytes(b"old")
    assert main(["export", remote, "--pick", "knee"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"evoprune export: wrote {folder}/ (knee: recorded accuracy")
    assert out[-1] == f"  report: {folder}/export.json"
    assert objects_under(folder) == ["export.json", "model.keras"]
    report = json.loads((storage_path(folder) / "export.json").read_text())
    model = (storage_path(folder) / "model.keras").read_bytes()
    assert report["model"] == f"{folder}/model.keras" and report["results_dir"] == remote
    assert report["formats"]["keras"]["bytes"] == len(model) and model.startswith(ZIP_SIGNATURE)
    assert report["mask"] == knee["mask"] and report["objectives"]["accuracy"] == knee["accuracy"]
    assert report["check"]["exact"] and report["formats"]["keras"]["exact"]
    assert list(tmp_path.iterdir()) == []

    # the report's folder on object storage is its results' exports/, so --out there is refused at once
    assert main(["export", remote, "--pick", "knee", "--out", f"{remote}/elsewhere/model.keras"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"--out {remote}/elsewhere/model.keras: an export is written to object storage only" in error
    assert "elsewhere" not in objects_under(remote) and list(tmp_path.iterdir()) == []


def test_an_ensemble_is_exported_from_object_storage_and_reproduces_its_analysis(analysed, remote, tmp_path):
    row = analysed[1]
    window = f"{row['window_lower']}-{row['window_upper']}"
    assert main(["export", remote, "--ensemble", window, "--json"]) == 0
    folder = f"{remote}/exports/ensemble-mean-{window}"
    assert objects_under(folder) == ["export.json", "model.keras"]
    report = json.loads((storage_path(folder) / "export.json").read_text())
    assert report["model"] == f"{folder}/model.keras"
    assert [member["mask"] for member in report["members"]] == row["member_masks"]
    # the analysis's figure was read from the bucket, and the file scores it exactly
    assert report["analysis"]["column"] == "softmax_accuracy" and report["analysis"]["reproduced"] is True
    assert report["formats"]["keras"]["accuracy"] == row["softmax_accuracy"]
    assert list(tmp_path.iterdir()) == []


def test_an_ensemble_that_does_not_reproduce_its_analysis_uploads_nothing(analysed, remote, capsys):
    table = pq.read_table(analysed[0] / "analysis" / "ensembles.parquet")
    # the analysis claims a better mean-softmax accuracy for every window than its members reach
    recorded = table.column("softmax_accuracy").to_pylist()
    claimed = [None if value is None else value + 0.01 for value in recorded]
    column = table.column_names.index("softmax_accuracy")
    staged = analysed[0].parent / "claimed.parquet"
    write_parquet(staged, table.set_column(column, "softmax_accuracy", pa.array(claimed, pa.float64())))
    (storage_path(remote) / "analysis" / "ensembles.parquet").write_bytes(staged.read_bytes())
    row = analysed[1]
    assert main(["export", remote, "--ensemble", f"{row['window_lower']}-{row['window_upper']}"]) == 1
    assert "where the analysis recorded" in " ".join(capsys.readouterr().err.split())
    assert "exports" not in objects_under(remote)


@pytest.mark.parametrize(
    "command", [["export", "s3://bucket/runs/tiny", "--pick", "knee"], ["analyze", "s3://bucket/runs/tiny"]]
)
def test_object_storage_that_does_not_answer_is_bad_input_named_on_one_line(command, monkeypatch, capsys):
    # nothing listens on port 1: the storage call fails at once, as an unreachable endpoint does
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert main(command) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "evoprune: error: cannot read s3://bucket/runs/tiny" in error and "Traceback" not in error
