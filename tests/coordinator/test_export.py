import json

import keras
import numpy as np
import pytest

from evoprune.coordinator.export import ExportError, export_model
from evoprune.shared.config import parse_config
from evoprune.workers.assemble import fitness_rows
from evoprune.workers.export_inputs import raw_inputs
from tests.coordinator.analysis_fixtures import run_experiment
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


def test_export_refuses_both_or_neither_of_mask_and_rule(tmp_path):
    with pytest.raises(ExportError, match="either a mask"):
        export_model(tmp_path, mask="00", rule="knee")
    with pytest.raises(ExportError, match="either a mask"):
        export_model(tmp_path)
