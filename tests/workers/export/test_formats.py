import json

import numpy as np
import pytest

from evoprune.shared.config import RobustnessConfig
from evoprune.workers.evaluation.odin import ood_auroc
from evoprune.workers.export import formats
from evoprune.workers.export._check import ExportMismatchError, probability_auroc
from evoprune.workers.export._deploy import Reference, Samples, deploy, judge
from evoprune.workers.export.build import _publish
from evoprune.workers.export.formats import FormatError, check_request, file_name, parse_formats


def test_formats_are_parsed_in_one_order_with_the_keras_file_always_first():
    assert parse_formats(None) == ("keras",)
    assert parse_formats("onnx,tflite") == ("keras", "tflite", "onnx")
    assert parse_formats(["TFLite", "saved_model,onnx", "tflite"]) == (
        "keras",
        "saved_model",
        "tflite",
        "onnx",
    )
    with pytest.raises(FormatError, match="unknown export format 'pt'; choose from keras, saved_model"):
        parse_formats("tflite,pt")
    with pytest.raises(FormatError, match="unknown export format an empty name"):
        parse_formats("tflite,")


def test_a_quantisation_needs_tflite_and_a_format_its_packages(monkeypatch):
    check_request(("keras", "tflite"), "int8")
    with pytest.raises(FormatError, match="--quantize float16 applies to the TFLite file only") as raised:
        check_request(("keras", "onnx"), "float16")
    assert raised.value.field == "quantize"
    with pytest.raises(FormatError, match="unknown quantisation 'int4'"):
        check_request(("keras", "tflite"), "int4")
    # a server without the export extra refuses onnx by name instead of failing in the converter
    monkeypatch.setitem(formats.NEEDS, "onnx", {"evoprune_no_such_module": "no-such-package"})
    with pytest.raises(FormatError, match=r'needs no-such-package, .* pip install "evoprune\[export\]"'):
        check_request(("keras", "onnx"), None)


def test_file_names_say_the_format_and_the_quantisation():
    assert [file_name("model", name) for name in formats.FORMATS] == [
        "model.keras",
        "model.saved_model",
        "model.tflite",
        "model.onnx",
    ]
    assert file_name("model", "tflite", "int8") == "model-int8.tflite"


def test_a_new_export_removes_the_files_of_the_previous_ones_other_formats(tmp_path):
    folder, staging = tmp_path / "exports" / "knee", tmp_path / "staging"
    folder.mkdir(parents=True)
    staging.mkdir()
    for name in ("model.keras", "model.onnx", "model-int8.tflite", "notes.txt"):
        (folder / name).write_text("old")
    (folder / "model.saved_model").mkdir()
    listed = ["model.keras", "model.onnx", "model-int8.tflite", "model.saved_model"]
    (folder / "export.json").write_text(
        json.dumps({"formats": {str(i): {"file": f} for i, f in enumerate(listed)}})
    )
    for name in ("model.keras", "model.tflite"):
        (staging / name).write_text("new")
    _publish(staging, folder / "model.keras", ["model.keras", "model.tflite"])
    kept = sorted(path.name for path in folder.iterdir())
    # the user's own file stays; export.json is rewritten by the caller
    assert kept == ["export.json", "model.keras", "model.tflite", "notes.txt"]
    assert (folder / "model.keras").read_text() == "new"


def test_auroc_from_probabilities_equals_the_auroc_from_logits():
    rng = np.random.default_rng(0)
    logits, ood_logits = rng.normal(0, 3, (50, 4)), rng.normal(0, 1, (40, 4))
    robustness = RobustnessConfig()

    def softmax(values):
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    expected = ood_auroc(logits, ood_logits, robustness.temperature)
    measured = probability_auroc(softmax(logits), softmax(ood_logits), robustness)
    assert measured == pytest.approx(expected, abs=1e-12)


def _tiny_model(path):
    import keras

    inputs = keras.Input((4,), name="features")
    dense = keras.layers.Dense(3, activation="softmax", name="probabilities")
    model = keras.Model(inputs, dense(inputs))
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5
    bias = np.array([0.1, -0.2, 0.05], dtype=np.float32)
    dense.set_weights([kernel, bias])
    model.save(path)
    return kernel, bias


def test_a_file_is_reloaded_in_a_fresh_process_and_fails_by_format_when_it_differs(tmp_path):
    kernel, bias = _tiny_model(tmp_path / "model.keras")
    rng = np.random.default_rng(1)
    inputs, ood = rng.normal(size=(30, 4)).astype(np.float32), rng.normal(size=(20, 4)).astype(np.float32)
    logits = inputs.astype(np.float64) @ kernel + bias
    labels = np.argmax(logits, axis=1)
    samples = Samples(inputs, ood, None)
    robustness = RobustnessConfig()
    retrained_auroc = ood_auroc(logits, ood.astype(np.float64) @ kernel + bias, robustness.temperature)
    report = deploy(
        tmp_path / "model.keras",
        ("keras",),
        None,
        samples,
        Reference(labels, logits, robustness, retrained_auroc),
        lambda line: None,
    )
    (entry,) = report["formats"].values()
    assert entry["exact"] and entry["accuracy"] == 1.0 and entry["runtime"]["name"].startswith("keras")
    assert entry["auroc"] == pytest.approx(retrained_auroc, abs=1e-6) and entry["auroc_change"] == 0
    # an unquantised file whose predictions differ beyond near-ties fails, naming its format; a quantised
    # one reports the change instead
    onnx = {**entry, "file": "model.onnx", "accuracy": 0.5, "reproduced": False, "unexplained": 3}
    int8 = {**onnx, "file": "model-int8.tflite", "quantization": "int8", "auroc": entry["auroc"] - 0.01}
    judge({"keras": dict(entry), "tflite": int8})
    assert int8["accuracy_change"] == 0.5 - entry["accuracy"]
    assert int8["auroc_change"] == pytest.approx(-0.01)
    with pytest.raises(ExportMismatchError, match=r"the onnx file scores accuracy 0\.5 where the search"):
        judge({"keras": dict(entry), "onnx": onnx})
