"""A mask's trained weights and logits are bitwise the same alone and in groups of every size, per backend."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from evoprune.shared.config import ExperimentConfig
from evoprune.workers import backend
from evoprune.workers.evaluation.evaluator import BatchedEvaluator
from evoprune.workers.evaluation.head_layout import active_indices
from evoprune.workers.features.feature_set import FeatureSet
from tests.workers.conftest import density_masks, digits_feature_set, json_under_jax, stopping_config

GROUP_SIZES = (1, 2, 3, 5)
# The head shapes whose reductions differ most: a compacted input, a compacted hidden layer, and two layers.
HEADS = {
    "features": {"layers": [32]},
    "neurons": {"mode": "neurons", "layers": [32]},
    "two-layers": {"layers": [24, 16], "masked": [0, 1], "hidden_bias": True},
}


def reference_config() -> ExperimentConfig:
    """protocol: reference: the clipped loss and the float64 stopping sums go through other reductions."""
    return ExperimentConfig.model_validate(
        {
            "protocol": "reference",
            "head": {"layers": [32]},
            "training": {"learning_rate": 0.5, "max_epochs": 12, "early_stopping": {"patience": 2}},
        }
    )


def configs() -> dict[str, ExperimentConfig]:
    cases = {name: stopping_config(head) for name, head in HEADS.items()}
    cases["reference"] = reference_config()
    return cases


def first_model_in_company(
    features: FeatureSet, config: ExperimentConfig, group: int, xla: bool | None
) -> list[np.ndarray]:
    """Model 0's trained weights and its evaluation and OoD logits, trained and scored with group - 1 others.

    The companions differ in density, so the group's padded widths (and every shape XLA sees) change with
    its size.
    """
    evaluator = BatchedEvaluator(features, config, group_size=group, xla=xla)
    masks = density_masks(group, evaluator.mask_length, seed=11)
    masks[0] = density_masks(1, evaluator.mask_length, seed=3)[0]
    kept = [active_indices(evaluator.shape, mask) for mask in masks]
    trained = evaluator._train(0, kept)
    widths = evaluator._padded_widths(list(range(group)), kept)
    params = tuple(np.asarray(array) for array in evaluator._padded_trained(trained, widths))
    indices = np.full((group, widths[0]), evaluator.shape.widths[0], dtype=np.int32)
    for row, model in enumerate(kept):
        indices[row, : len(model[0])] = model[0]
    fold = features.folds[0]
    splits = (fold.evaluation.features, fold.ood)
    logits = [evaluator._all_logits(params, indices, split)[0] for split in splits]
    return [*trained[0].params, np.asarray([trained[0].epochs]), *logits]


def company_report(xla: bool | None) -> dict[str, list[int]]:
    """Per config, the group sizes whose model 0 differs bitwise from model 0 trained alone."""
    features = digits_feature_set(samples=400)
    report = {}
    for name, config in configs().items():
        alone = first_model_in_company(features, config, 1, xla)
        report[name] = [
            group
            for group in GROUP_SIZES[1:]
            if not all(
                np.array_equal(a, b)
                for a, b in zip(alone, first_model_in_company(features, config, group, xla), strict=True)
            )
        ]
    return report


@pytest.mark.parametrize("xla", [True, False], ids=["xla", "graph"])
def test_a_model_is_bitwise_the_same_in_any_company_under_tensorflow(xla: bool) -> None:
    assert company_report(xla) == {name: [] for name in configs()}


JAX_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.workers.evaluation.test_company import company_report
print(json.dumps(company_report(None)))
"""


@pytest.mark.jax
def test_a_model_is_bitwise_the_same_in_any_company_under_jax() -> None:
    pytest.importorskip("jax")
    report = json_under_jax(JAX_SCRIPT, timeout=900)
    assert report == {name: [] for name in configs()}


PIN_SCRIPT = """
import os
from evoprune.workers import backend
print(os.environ.get("XLA_FLAGS", ""))
"""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", f"--{backend.YNN_FUSION_FLAG}="),
        ("--xla_cpu_max_isa=AVX2", f"--xla_cpu_max_isa=AVX2 --{backend.YNN_FUSION_FLAG}="),
        (f"--{backend.YNN_FUSION_FLAG}=individual_dot", f"--{backend.YNN_FUSION_FLAG}=individual_dot"),
    ],
)
def test_importing_the_backend_turns_the_ynnpack_fusions_off_unless_chosen(given: str, expected: str) -> None:
    assert backend.xla_knows_flag("tensorflow"), "the pinned TensorFlow's XLA lists the flag"
    environment = {**os.environ, "XLA_FLAGS": given}
    completed = subprocess.run(
        [sys.executable, "-c", PIN_SCRIPT], capture_output=True, text=True, env=environment, check=True
    )
    assert completed.stdout.strip() == expected


def test_an_unknown_flag_is_not_found() -> None:
    assert not backend.xla_knows_flag("tensorflow", "xla_cpu_no_such_flag_anywhere")


JAX_HLO_SCRIPT = """
import json
import os
import numpy as np
from keras import ops
from evoprune.workers.backend import compile_function
os.environ["XLA_FLAGS"] = ""  # as if JAX had read its flags before the backend pinned them
compiled = compile_function(lambda a, b: ops.matmul(a, b))
a, b = np.ones((1, 32, 64), np.float32), np.ones((1, 64, 16), np.float32)
print(json.dumps("__ynn_fusion" in compiled.lower(a, b).compile().as_text()))
"""


@pytest.mark.jax
def test_jax_functions_are_compiled_without_ynnpack_fusions_whatever_xla_flags_say() -> None:
    pytest.importorskip("jax")
    assert json_under_jax(JAX_HLO_SCRIPT) is False
