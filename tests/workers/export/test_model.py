import json
import subprocess
import sys

import numpy as np
import pytest

from evoprune.shared.config import parse_config
from evoprune.workers.evaluation.head_layout import head_shape
from evoprune.workers.evaluation.retrain import retrain
from evoprune.workers.export.build import compare_predictions
from evoprune.workers.export.inputs import FEATURES, RawInputs
from evoprune.workers.export.model import export_model, full_kept, head_cost, head_latency_ms, pruned_widths

# the file is read by plain Keras in a fresh interpreter that never imports evoprune
LOAD_AND_PREDICT = """
import json, sys
import numpy as np
import keras
paths, inputs, out = json.loads(sys.argv[1])
assert not any(name.startswith("evoprune") for name in sys.modules)
x = np.load(inputs)
models = [keras.saving.load_model(path) for path in paths]
np.savez(out, **{str(i): np.asarray(model.predict(x, verbose=0)) for i, model in enumerate(models)})
"""

HEADS = {
    "features": ({"layers": [32]}, [(None, 32), (32, 10)]),
    "neurons": ({"mode": "neurons", "layers": [32]}, [(64, None), (None, 10)]),
    # features mode, both layers masked: the mask selects the inputs and the first layer's units
    "two_layers_both_masked": ({"layers": [32, 16], "masked": [0, 1]}, [(None, None), (None, 16), (16, 10)]),
    "two_layers_neurons_second": (
        {"mode": "neurons", "layers": [32, 16], "masked": [1]},
        [(64, 32), (32, None), (None, 10)],
    ),
}


def trained(features, head, seed, mask=None):
    config = parse_config({"head": head, "training": {"max_epochs": 3}})
    shape = head_shape(config.head, features.input_dim, features.num_classes)
    if mask is None:
        mask = np.random.default_rng(seed).random(shape.mask_length) < 0.5
    (model,) = retrain(features, config, mask[None])
    return config, shape, model.folds[0]


def built(features, config, shape, outputs):
    sample = RawInputs(
        FEATURES, features.folds[0].evaluation.features, features.folds[0].evaluation.labels, None
    )
    return export_model(config.backbone, sample, shape, outputs.kept, outputs.params)


def kernel_shapes(model):
    return [tuple(layer.get_weights()[0].shape) for layer in model.layers if layer.get_weights()]


@pytest.mark.parametrize("name", list(HEADS))
def test_the_exported_head_keeps_only_the_active_rows_and_units(digits_features, name):
    head, expected = HEADS[name]
    config, shape, outputs = trained(digits_features, head, seed=len(name))
    model = built(digits_features, config, shape, outputs)
    kept = [len(indices) for indices in outputs.kept]
    # None in the expectation: the kept count at that position (smaller than the full width)
    widths = [*kept, 10]
    want = [
        (rows if rows is not None else widths[i], columns if columns is not None else widths[i + 1])
        for i, (rows, columns) in enumerate(expected)
    ]
    assert kernel_shapes(model) == want
    assert sum(kept) < sum(shape.widths)
    assert pruned_widths(shape, outputs.kept) == tuple(widths)
    split = digits_features.folds[0].evaluation
    probabilities = np.asarray(model.predict(split.features, verbose=0))
    check = compare_predictions(probabilities, outputs.evaluation_logits, split.labels)
    assert check["reproduced"] and check["max_probability_difference"] < 1e-5, check


def test_files_load_in_a_fresh_interpreter_and_exports_repeat_exactly(digits_features, tmp_path):
    paths = []
    logits = []
    for name in ["features", "features", "neurons", "two_layers_both_masked"]:
        # the first two: the same point exported twice, each from its own re-training
        head, _ = HEADS[name]
        config, shape, outputs = trained(digits_features, head, seed=len(name))
        path = tmp_path / f"{len(paths)}-{name}.keras"
        built(digits_features, config, shape, outputs).save(path)
        paths.append(str(path))
        logits.append(outputs.evaluation_logits)
    split = digits_features.folds[0].evaluation
    np.save(tmp_path / "x.npy", split.features)
    arguments = json.dumps([paths, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")])
    subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, arguments], check=True, timeout=300)
    predictions = np.load(tmp_path / "out.npz")
    for index, expected in enumerate(logits):
        check = compare_predictions(predictions[str(index)], expected, split.labels)
        assert check["reproduced"] and check["exported_accuracy"] == check["retrained_accuracy"], check
    np.testing.assert_array_equal(predictions["0"], predictions["1"])


@pytest.mark.parametrize(
    ("head", "empty"),
    [
        ({"layers": [32, 16], "masked": [0, 1], "hidden_bias": True}, slice(64, None)),
        ({"mode": "neurons", "layers": [32]}, slice(None)),
        ({"layers": [32]}, slice(None)),
    ],
)
def test_a_position_that_keeps_nothing_computes_what_the_search_scored(digits_features, head, empty):
    config = parse_config({"head": head})
    length = head_shape(config.head, 64, 10).mask_length
    mask = np.random.default_rng(0).random(length) < 0.5
    mask[empty] = False
    config, shape, outputs = trained(digits_features, head, seed=0, mask=mask)
    model = built(digits_features, config, shape, outputs)
    split = digits_features.folds[0].evaluation
    check = compare_predictions(
        np.asarray(model.predict(split.features, verbose=0)), outputs.evaluation_logits, split.labels
    )
    assert check["reproduced"] and check["max_probability_difference"] < 1e-5, check


def test_head_cost_counts_parameters_and_flops():
    cost = head_cost((2048, 512, 3), hidden_bias=False)
    assert cost.parameters == 2048 * 512 + 512 * 3 + 3
    assert cost.flops == 2 * (2048 * 512 + 512 * 3) + 3
    with_bias = head_cost((100, 20, 10, 4), hidden_bias=True)
    assert with_bias.parameters == 100 * 20 + 20 * 10 + 10 * 4 + 20 + 10 + 4


def test_head_latency_is_measured_for_both_heads(digits_features):
    _, shape, outputs = trained(digits_features, HEADS["features"][0], seed=1)
    for kept, params in ((full_kept(shape), None), (outputs.kept, outputs.params)):
        latency = head_latency_ms(shape, kept, params)
        assert latency["single_ms"] > 0 and latency["batched_ms"] > 0


def test_compare_predictions_flags_real_disagreements_and_forgives_near_ties():
    logits = np.array([[2.0, 1.0], [1.0, 1.0 + 1e-7], [0.0, 3.0]])
    labels = np.array([0, 1, 1])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    tie_flipped = softmax.copy()
    tie_flipped[1] = [0.6, 0.4]
    assert compare_predictions(tie_flipped, logits, labels)["reproduced"]
    assert compare_predictions(tie_flipped, logits, labels)["disagreements"] == 1
    wrong = softmax.copy()
    wrong[2] = [0.9, 0.1]
    check = compare_predictions(wrong, logits, labels)
    assert not check["reproduced"] and check["unexplained"] == 1


@pytest.mark.parametrize("combine", ["mean", "vote"])
def test_an_ensemble_model_combines_its_heads_as_the_analysis_does(digits_features, combine):
    from evoprune.workers.evaluation.ensemble_scores import combined_outputs, majority_vote
    from evoprune.workers.export.model import ensemble_model

    config = parse_config({"head": {"layers": [32]}, "training": {"max_epochs": 3}})
    shape = head_shape(config.head, digits_features.input_dim, digits_features.num_classes)
    rng = np.random.default_rng(7)
    masks = rng.random((3, shape.mask_length)) < 0.5
    outputs = [model.folds[0] for model in retrain(digits_features, config, masks)]
    split = digits_features.folds[0].evaluation
    sample = RawInputs(FEATURES, split.features, split.labels, None)
    model = ensemble_model(
        config.backbone, sample, shape, [(member.kept, member.params) for member in outputs], combine
    )
    # the backbone (here the features themselves) once, and one pruned head per member
    assert sum(layer.name.endswith("probabilities") for layer in model.layers) == 3
    produced = np.asarray(model.predict(split.features, verbose=0))
    logits = [member.evaluation_logits for member in outputs]
    expected = combined_outputs(logits, combine)
    np.testing.assert_allclose(produced, expected, atol=1e-6)
    if combine == "vote":
        # vote shares are exact multiples of 1/3, and their argmax is the majority vote
        assert np.array_equal(produced * 3, np.round(produced * 3))
        predicted = np.stack([np.argmax(member, axis=1) for member in logits])
        votes = majority_vote(predicted, digits_features.num_classes)
        assert np.array_equal(np.argmax(produced, axis=1), votes)
        # heads of zero weights give every class the same probability: each vote goes to class 0, as
        # majority_vote's and numpy's argmax break ties
        zeroed = [(member.kept, [np.zeros_like(array) for array in member.params]) for member in outputs]
        tied = ensemble_model(config.backbone, sample, shape, zeroed, combine)
        shares = np.asarray(tied.predict(split.features[:5], verbose=0))
        assert shares.tolist() == [[1.0] + [0.0] * (digits_features.num_classes - 1)] * 5
    else:
        assert np.array_equal(np.argmax(produced, axis=1), np.argmax(expected, axis=1))
