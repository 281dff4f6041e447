"""Fused training (many epochs per compiled call) against the per-epoch host path: bitwise the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.evaluator import BatchedEvaluator
from evoprune.workers.features.feature_set import FeatureSet
from tests.workers.conftest import (
    MAX_EPOCHS,
    density_masks,
    digits_feature_set,
    json_under_jax,
    stopping_config,
)

ROOT = Path(__file__).resolve().parents[3]
HEADS = {
    "features": {"layers": [32]},
    "neurons": {"mode": "neurons", "layers": [32]},
    "two-layers-both-bias": {"layers": [24, 16], "masked": [0, 1], "hidden_bias": True},
}


def objectives(features: FeatureSet, config: ExperimentConfig, masks: np.ndarray, **options: object) -> list:
    results = BatchedEvaluator(features, config, **options).evaluate(masks)  # type: ignore[arg-type]
    return [(r.accuracy, r.active_fraction, r.auroc, r.epochs) for r in results]


def masks_for(features: FeatureSet, config: ExperimentConfig) -> np.ndarray:
    length = BatchedEvaluator(features, config).mask_length
    return density_masks(6, length, seed=5)


@pytest.mark.parametrize("restore", ["always", "when_stopped", "never"])
def test_fused_equals_per_epoch_path_bitwise(digits_features, restore: str) -> None:
    config = stopping_config(HEADS["features"], restore)
    masks = masks_for(digits_features, config)
    per_epoch = objectives(digits_features, config, masks, epochs_per_call=1)
    epochs = [row[3] for row in per_epoch]
    assert any(e < MAX_EPOCHS for e in epochs) and any(e == MAX_EPOCHS for e in epochs), epochs
    assert len({row[0] for row in per_epoch}) > 3  # accuracies that differ between masks
    for per_call in (7, None):
        assert objectives(digits_features, config, masks, epochs_per_call=per_call) == per_epoch


def reference_config() -> ExperimentConfig:
    """protocol: reference (clipped loss, Keras 2's float64 decision and restore) with large steps, under
    which the clip changes most masks' training on digits (tests/workers/evaluation/test_evaluator.py)."""
    return ExperimentConfig.model_validate(
        {
            "protocol": "reference",
            "head": {"layers": [32]},
            "training": {
                "learning_rate": 0.5,
                "max_epochs": MAX_EPOCHS,
                "early_stopping": {"min_delta": 0.001, "patience": 2},
            },
        }
    )


def test_fused_equals_per_epoch_path_under_the_reference_protocol(digits_features) -> None:
    config = reference_config()
    masks = masks_for(digits_features, config)
    per_epoch = objectives(digits_features, config, masks, epochs_per_call=1)
    for per_call in (7, None):
        assert objectives(digits_features, config, masks, epochs_per_call=per_call) == per_epoch


def test_restore_modes_differ_where_they_should(digits_features) -> None:
    # when_stopped restores like always where the patience rule fired (also on the last epoch, which then
    # counts all MAX_EPOCHS) and keeps the last weights like never where the epochs ran out
    results = {
        restore: objectives(digits_features, config, masks_for(digits_features, config))
        for restore in ("always", "when_stopped", "never")
        for config in [stopping_config(HEADS["features"], restore)]
    }
    ran_out = 0
    for model, (always, when_stopped, never) in enumerate(zip(*results.values(), strict=True)):
        if when_stopped[3] < MAX_EPOCHS:
            assert when_stopped == always, model
        else:
            assert when_stopped in (always, never), model
            ran_out += when_stopped == never != always
    assert ran_out > 0


@pytest.mark.parametrize("head", ["neurons", "two-layers-both-bias"])
def test_fused_equals_per_epoch_path_for_other_heads(digits_features, head: str) -> None:
    config = stopping_config(HEADS[head])
    masks = masks_for(digits_features, config)
    per_epoch = objectives(digits_features, config, masks, epochs_per_call=1)
    assert objectives(digits_features, config, masks, epochs_per_call=None) == per_epoch


def test_fused_equals_per_epoch_path_over_folds() -> None:
    features = digits_feature_set(folds=2)
    config = stopping_config(HEADS["features"], "when_stopped")
    masks = masks_for(features, config)
    assert objectives(features, config, masks, epochs_per_call=5) == objectives(
        features, config, masks, epochs_per_call=1
    )


def test_fused_equals_per_epoch_path_without_xla(digits_features) -> None:
    config = stopping_config(HEADS["features"])
    masks = masks_for(digits_features, config)[:4]
    per_epoch = objectives(digits_features, config, masks, epochs_per_call=1, xla=False)
    assert objectives(digits_features, config, masks, epochs_per_call=None, xla=False) == per_epoch


def test_fused_results_do_not_depend_on_batch_company(digits_features) -> None:
    config = stopping_config(HEADS["features"])
    masks = masks_for(digits_features, config)
    together = objectives(digits_features, config, masks, group_size=6)
    alone = [objectives(digits_features, config, masks[m : m + 1], group_size=1)[0] for m in (0, 3, 5)]
    assert [together[m] for m in (0, 3, 5)] == alone


def test_epochs_per_call_is_not_part_of_the_protocol() -> None:
    # it changes no result, so configs that differ only in it share fitness-cache entries
    default = stopping_config(HEADS["features"])
    chunked = default.model_copy(
        update={"training": default.training.model_copy(update={"epochs_per_call": 7})}
    )
    assert chunked.protocol_fingerprint() == default.protocol_fingerprint()


JAX_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.workers.evaluation.test_fused import HEADS, masks_for, objectives, reference_config
from tests.workers.conftest import stopping_config
from tests.workers.conftest import digits_feature_set
cases = [("features", "always", 1), ("features", "when_stopped", 1), ("features", "never", 1),
         ("neurons", "always", 1), ("two-layers-both-bias", "always", 1), ("features", "when_stopped", 2),
         ("features", "reference", 1)]
report = {{}}
for head, restore, folds in cases:
    features = digits_feature_set(folds=folds)
    config = reference_config() if restore == "reference" else stopping_config(HEADS[head], restore)
    masks = masks_for(features, config)
    runs = {{str(k): objectives(features, config, masks, epochs_per_call=k) for k in (1, 7, None)}}
    alone = [objectives(features, config, masks[m : m + 1], group_size=1)[0] for m in (0, 5)]
    report[f"{{head}}/{{restore}}/{{folds}}"] = {{"runs": runs, "alone": alone}}
print(json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.jax
def test_fused_equals_per_epoch_path_under_jax() -> None:
    pytest.importorskip("jax")
    report = json_under_jax(JAX_SCRIPT, timeout=900)
    for case, outcome in report.items():
        per_epoch = outcome["runs"]["1"]
        assert outcome["runs"]["7"] == per_epoch, case
        assert outcome["runs"]["None"] == per_epoch, case
        assert [per_epoch[0], per_epoch[5]] == outcome["alone"], case
    epochs = [row[3] for row in report["features/always/1"]["runs"]["1"]]
    assert any(e < MAX_EPOCHS for e in epochs) and any(e == MAX_EPOCHS for e in epochs), epochs
