"""`evoprune export --format ... --quantize ...` from a fresh command line: every file reloaded and scored."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.export import export_model
from evoprune.coordinator.results.picks import front_rows, pick
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.features.assemble import fitness_rows
from tests.api.cli.test_export import copy_of, finished  # noqa: F401 (the module's fixture)

EXPORT_TIMEOUT_S = 900
# TensorFlow's start-up lines that `export` must not show (api/_quiet_tensorflow.py)
CHATTER = ("oneDNN custom operations", "cuInit", "Could not find cuda drivers", "absl::InitializeLog")


@pytest.mark.slow
def test_every_format_reloads_with_its_own_runtime_and_int8_reports_its_cost(finished, tmp_path):  # noqa: F811
    results_dir, config = finished
    results_dir = copy_of(results_dir, tmp_path)
    knee = pick(front_rows(pq.read_table(results_dir / "front.parquet").to_pylist()), "knee")
    command = [sys.executable, "-m", "evoprune.api.cli", "export", str(results_dir), "--pick", "knee"]
    command += ["--format", "saved_model,tflite", "--format", "onnx", "--quantize", "int8"]
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, env=environment, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [line for line in done.stderr.splitlines() if any(word in line for word in CHATTER)]
    folder = results_dir / "exports" / "knee"
    report = json.loads((folder / "export.json").read_text())
    written = ["model.keras", "model.saved_model", "model-int8.tflite", "model.onnx"]
    assert [entry["file"] for entry in report["formats"].values()] == written
    assert list(report["formats"]) == ["keras", "saved_model", "tflite", "onnx"]
    # the terminal: each file with its size, then the report's path
    for name in written:
        assert name in done.stdout
    assert done.stdout.splitlines()[-1] == f"  report: {folder / 'export.json'}"

    runtimes = {name: entry["runtime"]["name"] for name, entry in report["formats"].items()}
    assert runtimes["saved_model"].startswith("tf.saved_model.load")
    assert runtimes["tflite"].startswith("ai_edge_litert") and runtimes["onnx"].startswith("onnxruntime")
    for name in ("keras", "saved_model", "onnx"):
        entry = report["formats"][name]
        assert entry["exact"] and entry["accuracy"] == knee["accuracy"] and entry["accuracy_change"] == 0
        assert entry["auroc"] == pytest.approx(entry["retrained_auroc"], abs=1e-6)
        assert entry["bytes"] > 0
    int8 = report["formats"]["tflite"]
    assert int8["quantization"] == "int8" and report["quantize"] == "int8"
    assert int8["bytes"] == (folder / "model-int8.tflite").stat().st_size < report["float_tflite_bytes"]
    assert int8["accuracy_change"] == int8["accuracy"] - report["formats"]["keras"]["accuracy"]
    assert int8["auroc_change"] == pytest.approx(int8["auroc"] - report["formats"]["keras"]["auroc"])
    # quantisation costs something, measured: int8 outputs are not the float model's
    assert int8["max_probability_difference"] > 1e-4

    # checked again here, by the runtimes themselves, on the raw inputs (neither imports TensorFlow)
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    samples = raw_inputs(config, fitness_rows(config, 0))
    values = samples.values.astype(np.float32)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: values})[0]
    assert float(np.mean(probabilities.argmax(axis=1) == samples.labels)) == knee["accuracy"]
    interpreter = Interpreter(model_path=str(folder / "model-int8.tflite"))
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], values.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], values)
    interpreter.invoke()
    quantized = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert float(np.mean(quantized.argmax(axis=1) == samples.labels)) == int8["accuracy"]

    # float16 into the same folder: the int8, ONNX and SavedModel files of the export before are gone
    again = export_model(results_dir, rule="knee", formats="tflite", quantize="float16")
    assert sorted(path.name for path in folder.iterdir()) == [
        "export.json",
        "model-float16.tflite",
        "model.keras",
    ]
    float16 = again["formats"]["tflite"]
    assert float16["quantization"] == "float16" and float16["bytes"] < again["float_tflite_bytes"]
    # float16 weights move the probabilities by far less than int8 does
    assert float16["max_probability_difference"] < int8["max_probability_difference"]
    # at most two predictions flip (one flip moves the accuracy by one over the split's size)
    assert abs(float16["accuracy_change"]) <= 2 / again["check"]["samples"]
