import json

import keras
import numpy as np
import pytest

from evoprune.coordinator.export import ExportError, export_model
from evoprune.shared.config import parse_config
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.features.assemble import fitness_rows
from tests.coordinator.analysis.fixtures import run_experiment
from tests.workers.export.test_inputs import digits_features_file
from tests.workers.generated_images import shapes_config_data


def test_a_cnn_export_reads_images_through_the_backbone(tmp_path_factory):
    # MobileNetV2 (random weights) on 96×96 RGB images; the head prunes hidden units (neurons mode)
    out = tmp_path_factory.mktemp("export-cnn") / "results"
    data = shapes_config_data(
        tmp_path_factory.getbasetemp(),
        {"population_size": 4, "max_evaluations": 6, "runs": 1},
        mode="neurons",
    )
    config = parse_config(data)
    features = run_experiment(config, out)
    report = export_model(out, rule="best-accuracy", feature_set=features)
    assert report["backbone"] == "mobilenetv2" and report["mode"] == "neurons"
    assert report["input"]["kind"] == "images" and report["input"]["shape"][:2] == [96, 96]
    assert report["check"]["reproduced"] and report["check"]["disagreements"] == 0, report["check"]
    assert report["check"]["exported_accuracy"] == report["objectives"]["accuracy"]
    # the OoD images, read again and rescaled to the dataset's range, score as the search's features did
    keras_file = report["formats"]["keras"]
    # (a random-weight MobileNetV2 saturates its softmax in float32: then the AUROC from the model's
    # probabilities is not the search's, and the report says so)
    if keras_file["auroc"] != pytest.approx(keras_file["retrained_auroc"], abs=1e-6):
        assert "saturate" in keras_file["auroc_note"]
    kept = report["active_bits"]
    assert report["head"]["widths"]["after"] == [1280, kept, report["head"]["widths"]["before"][-1]]
    model = keras.saving.load_model(report["model"])
    kernels = [
        layer.get_weights()[0].shape for layer in model.layers if layer.name.startswith(("hidden", "prob"))
    ]
    assert kernels == [(1280, kept), (kept, report["head"]["widths"]["after"][-1])]
    assert report["model_parameters"]["after"] == model.count_params() < report["model_parameters"]["before"]
    samples = raw_inputs(config, fitness_rows(config, 0))
    accuracy = np.mean(np.argmax(model.predict(samples.values, verbose=0), axis=1) == samples.labels)
    assert accuracy == report["objectives"]["accuracy"]
    assert json.loads((out / "exports" / "best-accuracy" / "export.json").read_text()) == report


def test_a_k_fold_export_is_fold_zeros_head_checked_on_its_validation_slice(tmp_path):
    source = digits_features_file(tmp_path / "digits.parquet")
    config = parse_config(
        {
            "name": "folds",
            "dataset": {"source": f"features:{source}", "folds": 3},
            "ood": [{"source": "sklearn:sample_images"}],
            "backbone": {"name": "pixels", "weights": None},
            "head": {"layers": [16, 8], "masked": [0, 1], "hidden_bias": True},
            "training": {"max_epochs": 2},
            "fitness_split": "validation",
            "search": {"population_size": 4, "max_evaluations": 4, "runs": 1},
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    features = run_experiment(config, tmp_path / "results")
    report = export_model(tmp_path / "results", rule="smallest", min_accuracy=0.0, feature_set=features)
    assert report["fold"]["exported"] == 0 and report["fold"]["folds"] == 3
    assert report["input"] == {"kind": "features", "shape": [64], "pixel_max": None}
    check = report["check"]
    assert check["split"] == "validation" and check["samples"] == len(features.folds[0].evaluation)
    assert check["reproduced"] and check["exported_accuracy"] == check["retrained_accuracy"]
    keras_file = report["formats"]["keras"]
    # a features dataset's model reads the fold's OoD features as they are
    assert keras_file["exact"] and "auroc_note" not in keras_file
    assert keras_file["auroc"] == pytest.approx(keras_file["retrained_auroc"], abs=1e-6)
    # the recorded accuracy is the mean over the three folds' heads
    assert check["recorded_accuracy"] == report["objectives"]["accuracy"]
    assert "test_accuracy" in report["objectives"]
    widths = report["head"]["widths"]
    assert widths["before"] == [64, 16, 8, 10] and widths["after"][2:] == [8, 10]
    assert report["pick"] == {
        "rule": "smallest",
        "run": -1,
        "kind": report["pick"]["kind"],
        "front_size": report["pick"]["front_size"],
        "min_accuracy": 0.0,
    }


def test_export_refuses_both_or_neither_of_mask_and_rule(tmp_path):
    with pytest.raises(ExportError, match="either a mask"):
        export_model(tmp_path, mask="00", rule="knee")
    with pytest.raises(ExportError, match="either a mask"):
        export_model(tmp_path)


def test_a_screened_out_mask_is_refused_by_name(tmp_path):
    from evoprune.coordinator.results.writer import read_evaluations
    from tests.coordinator.test_screening import REAL

    config = parse_config(REAL)
    features = run_experiment(config, tmp_path / "results")
    rows = read_evaluations(tmp_path / "results")
    screened = next(row["mask"] for row in rows if row["fidelity"] < 1)
    with pytest.raises(ExportError, match="screened out after 25% of the epochs") as raised:
        export_model(tmp_path / "results", mask=screened, feature_set=features)
    assert raised.value.field == "mask"
    kept = next(row for row in rows if row["fidelity"] == 1)
    report = export_model(tmp_path / "results", mask=kept["mask"], feature_set=features)
    assert report["check"]["reproduced"] and report["objectives"]["accuracy"] == kept["accuracy"]


def test_a_pick_of_a_constrained_front_prefers_its_feasible_members(tmp_path_factory, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from evoprune.coordinator.export import choose
    from evoprune.coordinator.results.picks import front_rows, pick
    from evoprune.shared.parquet_files import write_parquet
    from tests.coordinator.analysis.fixtures import session_results

    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    results_dir = tmp_path / "results"
    shutil.copytree(source, results_dir)
    table = pq.read_table(results_dir / "front.parquet")
    best = pick(front_rows(table.to_pylist()), "best-accuracy")

    def marked(feasible):
        write_parquet(results_dir / "front.parquet", table.append_column("feasible", pa.array(feasible)))

    # the most accurate member breaks the constraints: the pick takes the best feasible one
    marked([mask != best.mask for mask in table.column("mask").to_pylist()])
    _, choice = choose(results_dir, rule="best-accuracy")
    rows = front_rows(pq.read_table(results_dir / "front.parquet").to_pylist())
    feasible = [row for row in rows if row.feasible]
    assert choice.row["mask"] == pick(feasible, "best-accuracy").mask != best.mask
    assert choice.description["constraints"] == {
        "feasible": len(feasible),
        "front_size": len(rows),
        "picked_from": "feasible",
    }
    # no member is feasible: the pick is the unconstrained one, and says so
    marked([False] * table.num_rows)
    _, choice = choose(results_dir, rule="best-accuracy")
    assert choice.row["mask"] == best.mask
    assert choice.description["constraints"]["picked_from"] == "all: no member is feasible"
    # a front without constraints has no note
    write_parquet(results_dir / "front.parquet", table)
    assert "constraints" not in choose(results_dir, rule="best-accuracy")[1].description
