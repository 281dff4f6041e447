"""The zero mask (no active input) end to end through the evaluator, under both AUROC estimators."""

from __future__ import annotations

import numpy as np
import pytest

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.evaluator import BatchedEvaluator


def _config(estimator: str, mode: str = "features", epochs: int = 4) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "training": {"max_epochs": epochs},
            "head": {"mode": mode, "layers": [32]},
            "robustness": {"auroc_estimator": estimator},
        }
    )


@pytest.mark.parametrize("mode", ["features", "neurons"])
def test_the_zero_mask_scores_the_bias_only_head(digits_features, mode) -> None:
    # with no active input the hidden layer outputs exactly zero, so the logits are the output bias for
    # every sample: one predicted class, and one ODIN score shared by in-distribution and OoD samples
    length = 64 if mode == "features" else 32
    zero = np.zeros((1, length), dtype=bool)
    exact = BatchedEvaluator(digits_features, _config("exact", mode)).evaluate(zero)[0]
    reference = BatchedEvaluator(digits_features, _config("reference", mode)).evaluate(zero)[0]
    assert exact.active_fraction == reference.active_fraction == 0.0
    assert exact.auroc == 0.5  # every pair tied: counted half
    assert reference.auroc == 1.0  # nothing strictly above any threshold until the forced end point
    labels = digits_features.folds[0].evaluation.labels
    shares = {float(np.mean(labels == label)) for label in range(digits_features.num_classes)}
    assert exact.accuracy == reference.accuracy and exact.accuracy in shares
    # the bias grows fastest for the most frequent training class, which every sample is then given
    counts = np.bincount(digits_features.folds[0].train.labels)
    if (counts == counts.max()).sum() == 1:
        assert exact.accuracy == float(np.mean(labels == counts.argmax()))


def test_the_zero_mask_beside_other_masks_is_scored_the_same(digits_features) -> None:
    # in a batch with trained masks, the zero mask is still the bias-only head
    masks = np.zeros((3, 64), dtype=bool)
    masks[1, ::2] = True
    masks[2] = True
    together = BatchedEvaluator(digits_features, _config("reference"), group_size=3).evaluate(masks)
    alone = BatchedEvaluator(digits_features, _config("reference")).evaluate(masks[:1])[0]
    assert (together[0].accuracy, together[0].auroc) == (alone.accuracy, alone.auroc) == (alone.accuracy, 1.0)
    assert together[2].auroc < 1.0
