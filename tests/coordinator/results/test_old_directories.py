"""Results directories written before the typed results package still open through every reader."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import evoprune
from evoprune.api.cli.main import main
from evoprune.coordinator.results.artifacts import list_artifacts
from evoprune.coordinator.results.checkpoint import Checkpoint
from evoprune.coordinator.results.directory import load_resumable
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.population import population_fronts
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.service.records import new_record, restore_lost_records
from evoprune.coordinator.service.runner import RunnerSpec, run_service_experiment
from evoprune.shared.config import load_config
from evoprune.shared.store import StoreSpec
from evoprune.shared.store_local import LocalStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results-v1"
FINISHED = FIXTURES / "finished"
CANCELLED = FIXTURES / "cancelled"
SERVICE_ID = "00000000000000aa"
SERVICE = FIXTURES / "service" / SERVICE_ID
DIRECTORIES = (FINISHED, CANCELLED, SERVICE)


@pytest.fixture(autouse=True)
def own_feature_cache(tmp_path, monkeypatch):
    # the fixture's config names no cache_dir: its features go to ~/.cache, here a fresh home per test
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def copy_of(directory: Path, tmp_path: Path) -> Path:
    copy = tmp_path / directory.name
    shutil.copytree(directory, copy)
    return copy


def comparable(rows):
    names = ("run", "step", "mask", "accuracy", "active_fraction", "auroc", "test_accuracy", "test_auroc")
    return [tuple(row[name] for name in names) for row in rows]


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda d: d.name)
def test_checkpoint_and_summary_read_and_write_back_byte_for_byte(directory):
    layout = ResultsLayout(directory)
    checkpoint = Checkpoint.read(layout.checkpoint)
    # written back, an old checkpoint gains only its seal (its own sha256, last)
    written = checkpoint.to_dict()
    assert list(written)[-1] == "sha256" and Checkpoint.from_dict(written) == checkpoint
    del written["sha256"]
    assert json.dumps(written, separators=(",", ":")) == layout.checkpoint.read_text()
    summary = Summary.read(layout.summary)
    assert json.dumps(summary.to_dict(), indent=2) == layout.summary.read_text()
    assert summary.aggregate.evaluations == sum(run.front.evaluations for run in summary.runs)


def test_live_population_fronts_read_the_old_checkpoint():
    config = load_config(FINISHED / "config.yaml")
    fronts = population_fronts(FINISHED, config.search)
    written = pq.read_table(ResultsLayout(FINISHED).front).to_pylist()
    for run in (-1, 0, 1):
        members = {r["mask"] for r in written if r["run"] == run and r["kind"] == "population"}
        assert set(fronts[run].masks) == members


def test_the_cancelled_directory_resumes_to_the_finished_one(tmp_path, capsys):
    out = copy_of(CANCELLED, tmp_path)
    _config, checkpoint = load_resumable(out)
    assert checkpoint.status == "cancelled" and checkpoint.rows == 12
    assert main(["resume", str(out), "--workers", "0"]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "succeeded"
    resumed = pq.read_table(ResultsLayout(out).evaluations).to_pylist()
    straight = pq.read_table(ResultsLayout(FINISHED).evaluations).to_pylist()
    assert comparable(resumed) == comparable(straight)
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(FINISHED / "front.parquet"))


def test_open_reads_fronts_picks_and_summary():
    result = evoprune.open(FINISHED)
    knee = json.loads((FINISHED / "exports" / "knee" / "export.json").read_text())
    assert result.pick("knee")["mask"] == knee["mask"]
    assert result.has_front_kinds
    front = result.front()
    assert set(front["kind"]) == {"population"} and -1 in set(front["run"])
    assert result.summary["status"] == "succeeded"


def test_export_picks_the_member_the_old_code_picked(tmp_path, capsys):
    out = copy_of(FINISHED, tmp_path)
    before = json.loads((out / "exports" / "knee" / "export.json").read_text())
    shutil.rmtree(out / "exports")
    assert main(["export", str(out), "--pick", "knee", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mask"] == before["mask"] and report["objectives"] == before["objectives"]


def test_analyze_rewrites_the_analysis_the_old_code_wrote(tmp_path, capsys):
    out = copy_of(FINISHED, tmp_path)
    before = json.loads((out / "analysis" / "analysis.json").read_text())
    assert main(["analyze", str(out), "--top", "2", "--samples", "1"]) == 0
    after = json.loads((out / "analysis" / "analysis.json").read_text())
    assert [entry["name"] for entry in after["artifacts"]] == [entry["name"] for entry in before["artifacts"]]
    assert after["top"] == before["top"]


def test_artifacts_list_the_old_analysis_and_export():
    names = [entry["name"] for entry in list_artifacts(FINISHED)]
    assert names[:4] == ["config.yaml", "summary.json", "evaluations.parquet", "front.parquet"]
    assert {"analysis.json", "importance.parquet", "export-knee.keras", "export-knee.json"} <= set(names)


def test_a_lost_record_is_restored_from_the_old_record_copy(tmp_path):
    data = tmp_path / "data"
    copy = data / "results" / SERVICE_ID
    shutil.copytree(SERVICE, copy)
    store = LocalStore(data)
    assert restore_lost_records(store, StoreSpec(data_dir=str(data))) == [SERVICE_ID]
    snapshot = store.snapshot(SERVICE_ID)
    saved = json.loads((SERVICE / "service-state.json").read_text())
    assert snapshot.record.to_dict() == saved["record"] and snapshot.front.to_dict() == saved["front"]


def test_a_restarted_runner_publishes_the_old_finished_directory(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SERVICE, data / "results" / SERVICE_ID)
    store = LocalStore(data)
    config = load_config(SERVICE / "config.yaml")
    store.create(new_record(SERVICE_ID, config, data / "results"))
    spec = RunnerSpec(experiment_id=SERVICE_ID, store=StoreSpec(data_dir=str(data)))
    assert run_service_experiment(spec, store=store) == "succeeded"
    record = store.get(SERVICE_ID)
    summary = json.loads((SERVICE / "summary.json").read_text())
    assert record.evaluations_done == summary["aggregate"]["evaluations"] == 20
    assert record.hypervolume == pytest.approx(summary["aggregate"]["hypervolume_archive"])
