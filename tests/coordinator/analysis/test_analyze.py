import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import special, stats
from sklearn.metrics import roc_auc_score

from evoprune.coordinator.analysis.analyze import analyze
from evoprune.coordinator.analysis.heatmaps import draw_heatmaps
from evoprune.coordinator.analysis.inputs import AnalysisError, read_results
from evoprune.coordinator.results.artifacts import fresh_staging, list_artifacts, publish
from evoprune.coordinator.results.layout import ANALYSIS_DIR
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.masks import decode_mask
from evoprune.workers.analysis.importance import bit_meanings
from evoprune.workers.evaluation.head_layout import head_shape
from evoprune.workers.evaluation.retrain import retrain
from tests import s3_server
from tests.coordinator.analysis.fixtures import run_experiment, session_results, tiny_config

# the S3-compatible server and a fresh bucket per test, as fixtures of this module
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
TEMPERATURE = 1000.0
MIN_PNG_SIDE = 300


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A finished tiny experiment on the demo's data, analysed once for the whole module."""
    shared, config, features = session_results(tmp_path_factory.getbasetemp())
    results_dir = tmp_path_factory.mktemp("analysis") / "results"
    shutil.copytree(shared, results_dir)
    index = analyze(results_dir, feature_set=features)
    return results_dir, config, features, index


@pytest.fixture(scope="module")
def retrained(analysed):
    """The aggregated front re-trained from its masks, outside the analysis, for direct checks."""
    results_dir, config, features, _ = analysed
    rows, masks = aggregated_front(results_dir)
    return rows, retrain(features, config, masks)


def assert_png(path, min_side=MIN_PNG_SIDE):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side, (path.name, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path.name} looks blank"


def aggregated_front(results_dir, kind="population"):
    rows = [
        row
        for row in pq.read_table(results_dir / "front.parquet").to_pylist()
        if row["run"] == -1 and row["kind"] == kind
    ]
    masks = np.stack([decode_mask(row["mask"], row["mask_length"]) for row in rows])
    return rows, masks


def test_writes_every_artifact_and_the_index(analysed):
    results_dir, _, _, index = analysed
    out = results_dir / ANALYSIS_DIR
    names = {entry["name"] for entry in index["artifacts"]}
    assert names == {
        "front_3d.png",
        "front_2d.png",
        "hypervolume_all.png",
        "importance.parquet",
        "importance_solutions.parquet",
        "importance.png",
        "pixel_importance.png",
        "ensembles.parquet",
        "ensembles.png",
        "analysis.json",
    }
    for name in names:
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert_png(out / name)
    assert json.loads((out / "analysis.json").read_text()) == index
    assert not (results_dir / ".analysis.partial").exists()


def test_retrained_front_reproduces_the_recorded_fitness_exactly(analysed, retrained):
    results_dir, _, _, index = analysed
    rows, models = retrained
    recorded = {}
    for row in read_evaluations(results_dir):
        recorded.setdefault(row["mask"], set()).add((row["accuracy"], row["auroc"]))
    for row, model in zip(rows, models, strict=True):
        assert recorded[row["mask"]] == {(model.evaluation.accuracy, model.evaluation.auroc)}
    assert index["reproduced"] == {
        "models": len(rows),
        "exact": len(rows),
        "max_accuracy_difference": 0.0,
        "max_auroc_difference": 0.0,
    }


def test_importance_frequencies_match_a_direct_count(analysed):
    results_dir, _, _, index = analysed
    rows, masks = aggregated_front(results_dir)
    table = pq.read_table(results_dir / ANALYSIS_DIR / "importance.parquet").to_pylist()
    assert [row["bit"] for row in table] == list(range(masks.shape[1]))
    for row in table:
        count = sum(1 for mask in masks if mask[row["bit"]])
        assert row["count"] == count
        assert row["frequency"] == pytest.approx(count / len(masks))
        users = [front_row for front_row, mask in zip(rows, masks, strict=True) if mask[row["bit"]]]
        if users:
            assert row["mean_accuracy"] == pytest.approx(np.mean([u["accuracy"] for u in users]))
            assert row["best_accuracy"] == max(u["accuracy"] for u in users)
    counts = np.array([row["count"] for row in table])
    expected_top = sorted(range(len(counts)), key=lambda bit: (-counts[bit], bit))[:10]
    assert [entry["bit"] for entry in index["top"]] == expected_top
    ranked = sorted((row for row in table if row["rank"] is not None), key=lambda row: row["rank"])
    assert [row["bit"] for row in ranked] == expected_top
    solutions = pq.read_table(results_dir / ANALYSIS_DIR / "importance_solutions.parquet").to_pylist()
    for rank, bit in enumerate(expected_top, start=1):
        listed = {row["mask"] for row in solutions if row["bit"] == bit}
        assert listed == {front_row["mask"] for front_row, mask in zip(rows, masks, strict=True) if mask[bit]}
        assert {row["rank"] for row in solutions if row["bit"] == bit} == {rank}


def odin(logits):
    return special.softmax(np.asarray(logits, dtype=np.float64) / TEMPERATURE, axis=-1).max(axis=-1)


def test_ensembles_match_a_direct_computation(analysed, retrained):
    results_dir, _, features, _ = analysed
    rows, models = retrained
    accuracies = np.array([row["accuracy"] for row in rows])
    labels = features.folds[0].evaluation.labels
    table = pq.read_table(results_dir / ANALYSIS_DIR / "ensembles.parquet").to_pylist()
    assert [(row["window_lower"], row["window_upper"]) for row in table] == [
        (low, low + 10) for low in range(50, 90, 5)
    ]
    non_empty = 0
    for row in table:
        low, high = np.percentile(accuracies, [row["window_lower"], row["window_upper"]])
        members = [i for i, accuracy in enumerate(accuracies) if low <= accuracy <= high]
        assert row["member_masks"] == [rows[i]["mask"] for i in members]
        assert row["members"] == len(members)
        if not members:
            assert row["accuracy"] is None
            continue
        non_empty += 1
        predictions = np.stack([models[i].folds[0].evaluation_logits.argmax(axis=1) for i in members])
        voted = stats.mode(predictions, axis=0, keepdims=False).mode  # ties: the smallest class
        assert row["accuracy"] == pytest.approx(np.mean(voted == labels), abs=1e-12)
        inside = np.mean([odin(models[i].folds[0].evaluation_logits) for i in members], axis=0)
        outside = np.mean([odin(models[i].folds[0].ood_logits) for i in members], axis=0)
        scores = np.concatenate([inside, outside])
        truth = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
        assert row["auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
        best = max(members, key=lambda i: (accuracies[i], rows[i]["auroc"], -i))
        assert row["best_mask"] == rows[best]["mask"]
        assert (row["best_accuracy"], row["best_auroc"]) == (rows[best]["accuracy"], rows[best]["auroc"])
        assert row["member_accuracies"] == [rows[i]["accuracy"] for i in members]
    assert non_empty >= 4


def test_list_artifacts_names_every_servable_file(analysed):
    results_dir, _, _, index = analysed
    listed = list_artifacts(results_dir)
    names = [entry["name"] for entry in listed]
    assert len(names) == len(set(names))
    assert {"front.png", "summary.json", "front.parquet", "evaluations.parquet"} <= set(names)
    assert {entry["name"] for entry in index["artifacts"]} <= set(names)
    kinds = {entry["name"]: entry["kind"] for entry in listed}
    assert kinds["importance.png"] == "image" and kinds["pixel_importance.png"] == "image"
    assert kinds["ensembles.parquet"] == "table" and kinds["analysis.json"] == "json"
    for entry in listed:
        assert set(entry) >= {"name", "kind", "path", "media_type"}
        assert Path(entry["path"]).is_absolute() and Path(entry["path"]).is_file()


def test_list_artifacts_ignores_unsafe_or_missing_entries(analysed, tmp_path):
    results_dir, _, _, _ = analysed
    copy = tmp_path / "copy"
    shutil.copytree(results_dir, copy)
    index_path = copy / ANALYSIS_DIR / "analysis.json"
    index = json.loads(index_path.read_text())
    index["artifacts"] += [{"name": "../summary.json"}, {"name": "gone.png"}, {"name": "front.png"}]
    index_path.write_text(json.dumps(index))
    names = [entry["name"] for entry in list_artifacts(copy)]
    assert "../summary.json" not in names and "gone.png" not in names
    assert names.count("front.png") == 1
    index_path.write_text("{not json")
    assert {entry["name"] for entry in list_artifacts(copy)} == {
        "config.yaml",
        "summary.json",
        "evaluations.parquet",
        "front.parquet",
        "front.png",
        "hypervolume.png",
    }
    assert list_artifacts(tmp_path / "missing") == []


def test_a_failed_analysis_keeps_the_previous_one(analysed, tmp_path):
    results_dir, _, features, _ = analysed
    copy = tmp_path / "copy"
    shutil.copytree(results_dir, copy)
    before = {p.name: p.read_bytes() for p in (copy / ANALYSIS_DIR).iterdir()}

    def failing_log(line):
        # the first stage line comes once the front plots are in the new folder
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        analyze(copy, feature_set=features, log=failing_log)
    assert {p.name: p.read_bytes() for p in (copy / ANALYSIS_DIR).iterdir()} == before
    assert not (copy / ".analysis.partial").exists()


def test_publishing_replaces_the_previous_analysis(tmp_path):
    (tmp_path / ANALYSIS_DIR).mkdir()
    (tmp_path / ANALYSIS_DIR / "old.png").write_bytes(b"old")
    staging = fresh_staging(tmp_path)
    (staging / "new.png").write_bytes(b"new")
    assert publish(tmp_path, staging) == tmp_path / ANALYSIS_DIR
    assert [p.name for p in tmp_path.iterdir()] == [ANALYSIS_DIR]
    assert [p.name for p in (tmp_path / ANALYSIS_DIR).iterdir()] == ["new.png"]
    # an interrupted analysis's leftovers are cleared before the next one
    (fresh_staging(tmp_path) / "partial.png").write_bytes(b"partial")
    assert list(fresh_staging(tmp_path).iterdir()) == []


def test_heatmaps_are_skipped_without_images(analysed):
    results_dir, config, _, _ = analysed
    inputs = read_results(results_dir)
    as_features = config.model_copy(
        update={"dataset": config.dataset.model_copy(update={"source": "features:x"})}
    )
    meanings = bit_meanings(head_shape(config.head, 64, 10))
    written, info = draw_heatmaps(
        dataclasses.replace(inputs, config=as_features), meanings, [0], np.ones(64), [], results_dir, 2
    )
    assert written == [] and "no images" in info["skipped"]


@pytest.mark.slow
def test_validation_fitness_split_adds_test_scores(tmp_path):
    config = tiny_config(tmp_path / "cache", fitness_split="validation")
    features = run_experiment(config, tmp_path / "results")
    index = analyze(tmp_path / "results", feature_set=features)
    assert index["reproduced"]["exact"] == index["reproduced"]["models"]
    out = tmp_path / "results" / ANALYSIS_DIR
    ensembles = pq.read_table(out / "ensembles.parquet").to_pylist()
    filled = [row for row in ensembles if row["members"]]
    assert filled and all(0.0 <= row["test_accuracy"] <= 1.0 for row in filled)
    assert all(row["best_test_accuracy"] is not None for row in filled)
    solutions = pq.read_table(out / "importance_solutions.parquet")
    assert {"test_accuracy", "test_auroc"} <= set(solutions.column_names)
    front = {row["mask"]: row for row in pq.read_table(tmp_path / "results" / "front.parquet").to_pylist()}
    for row in solutions.to_pylist():
        assert row["test_accuracy"] == front[row["mask"]]["test_accuracy"]


def test_the_analyses_read_the_population_fronts_unless_told_to_read_the_archives(analysed, tmp_path):
    results_dir, _, _, index = analysed
    assert index["front"] == "population" and index["front_size"] == len(aggregated_front(results_dir)[0])
    for kind in ("population", "archive"):
        inputs = read_results(results_dir, kind)
        assert inputs.front_kind == kind and {row["kind"] for row in inputs.front} == {kind}
        assert sorted(row["mask"] for row in inputs.aggregate) == sorted(
            row["mask"] for row in aggregated_front(results_dir, kind)[0]
        )
    # a front.parquet from before fronts had kinds holds archive fronts only
    legacy = tmp_path / "legacy"
    shutil.copytree(results_dir, legacy)
    table = pq.read_table(legacy / "front.parquet")
    archive = table.filter(pa.compute.equal(table["kind"], "archive")).drop_columns(["kind"])
    # written as that version wrote it: without the whole-file digest of today's files
    pq.write_table(archive.replace_schema_metadata(None), legacy / "front.parquet")
    assert len(read_results(legacy, "archive").aggregate) == len(aggregated_front(results_dir, "archive")[0])
    with pytest.raises(AnalysisError, match="--front archive"):
        read_results(legacy)
    with pytest.raises(AnalysisError, match="front: 'best'"):
        read_results(results_dir, "best")


def test_features_other_than_the_experiments_are_refused(analysed, tmp_path):
    results_dir, _, features, _ = analysed
    other = type(features)(key="another-feature-set", num_classes=features.num_classes, folds=features.folds)
    with pytest.raises(AnalysisError, match="other features"):
        analyze(results_dir, feature_set=other)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: shutil.rmtree(d), "not a directory"),
        (lambda d: (d / "config.yaml").unlink(), "no config.yaml"),
        (lambda d: (d / "summary.json").unlink(), "not finished"),
        (lambda d: (d / "summary.json").write_text('{"status": "cancelled"}'), "not finished"),
        (lambda d: (d / "front.parquet").write_bytes(b"garbage"), "corrupt"),
        (lambda d: (d / "evaluations.parquet").unlink(), "evaluations.parquet is missing"),
        (lambda d: (d / "summary.json").write_text("{"), "corrupt"),
    ],
)
def test_bad_results_directories_are_named(analysed, tmp_path, damage, message):
    results_dir, _, _, _ = analysed
    copy = tmp_path / "copy"
    shutil.copytree(results_dir, copy)
    damage(copy)
    with pytest.raises(AnalysisError, match=message):
        read_results(copy)


@pytest.mark.s3
def test_an_experiment_on_object_storage_is_analysed_there_as_locally(analysed, bucket):
    from evoprune.shared.storage import storage_path, upload_folder

    results_dir, _, features, local_index = analysed
    remote = storage_path(f"s3://{bucket}/runs/tiny")
    local_run = results_dir.parent / "run-only"
    shutil.copytree(results_dir, local_run, ignore=shutil.ignore_patterns(ANALYSIS_DIR))
    upload_folder(local_run, remote, last="summary.json")
    stale = remote / ANALYSIS_DIR / "left-by-an-older-analysis.png"
    stale.write_bytes(b"old")
    index = analyze(f"s3://{bucket}/runs/tiny", feature_set=features)
    uploaded = sorted(path.name for path in (remote / ANALYSIS_DIR).iterdir())
    assert uploaded == sorted(path.name for path in (results_dir / ANALYSIS_DIR).iterdir())
    assert json.loads((remote / ANALYSIS_DIR / "analysis.json").read_text()) == index

    def comparable(entry):
        return {key: value for key, value in entry.items() if key not in ("created", "seconds")}

    assert comparable(index) == comparable(local_index)
    for name in ("ensembles.parquet", "importance.parquet"):
        assert pq.read_table(pa.BufferReader((remote / ANALYSIS_DIR / name).read_bytes())).equals(
            pq.read_table(results_dir / ANALYSIS_DIR / name)
        ), name
