import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evoprune.shared.config import parse_config
from evoprune.shared.masks import MaskError
from evoprune.workers.evaluation.evaluator import BatchedEvaluator
from evoprune.workers.evaluation.odin import odin_scores
from evoprune.workers.evaluation.retrain import retrain
from evoprune.workers.features.feature_set import FeatureSet
from tests.workers.conftest import density_masks, digits_feature_set

TEMPERATURE = 1000.0


def small_config(**head):
    return parse_config({"head": {"layers": [32], **head}, "training": {"max_epochs": 4}})


def with_test_split(features: FeatureSet) -> FeatureSet:
    """The fold's evaluation split doubles as a test split, with its own OoD rows (validation-style)."""
    fold = features.folds[0]
    test_ood = fold.ood[::-1].copy()
    return dataclasses.replace(
        features, folds=(dataclasses.replace(fold, test=fold.evaluation, test_ood=test_ood),)
    )


def test_retrained_objectives_equal_the_evaluators_exactly(digits_features):
    config = small_config()
    masks = density_masks(6, 64, seed=5)
    recorded = BatchedEvaluator(digits_features, config).evaluate(masks)
    # one model per group: results must not depend on which masks share a batch
    models = retrain(digits_features, config, masks, group_size=1)
    for evaluation, model, mask in zip(recorded, models, masks, strict=True):
        assert (model.evaluation.accuracy, model.evaluation.auroc) == (evaluation.accuracy, evaluation.auroc)
        assert model.evaluation.active_fraction == evaluation.active_fraction
        np.testing.assert_array_equal(model.mask, mask)


def test_logits_give_the_objectives_directly(digits_features):
    config = small_config()
    masks = density_masks(3, 64, seed=6)
    fold = digits_features.folds[0]
    for model, mask in zip(retrain(digits_features, config, masks), masks, strict=True):
        (outputs,) = model.folds
        assert outputs.evaluation_logits.shape == (len(fold.evaluation), 10)
        assert outputs.ood_logits.shape == (len(fold.ood), 10)
        assert outputs.test_logits is None
        accuracy = np.mean(outputs.evaluation_logits.argmax(axis=1) == fold.evaluation.labels)
        assert model.evaluation.accuracy == accuracy
        inside = odin_scores(outputs.evaluation_logits, TEMPERATURE)
        outside = odin_scores(outputs.ood_logits, TEMPERATURE)
        truth = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
        assert model.evaluation.auroc == pytest.approx(
            roc_auc_score(truth, np.r_[inside, outside]), abs=1e-12
        )
        # the trained head is compacted to the kept inputs
        np.testing.assert_array_equal(outputs.kept[0], np.flatnonzero(mask))
        assert outputs.params[0].shape == (mask.sum(), 32)
        assert outputs.params[1].shape == (32, 10)
        logits = np.maximum(fold.evaluation.features[:, outputs.kept[0]] @ outputs.params[0], 0)
        logits = logits @ outputs.params[1] + outputs.params[2]
        np.testing.assert_allclose(logits, outputs.evaluation_logits, rtol=1e-4, atol=1e-4)


def test_neurons_mode_keeps_the_masked_units():
    features = digits_feature_set(samples=300)
    config = small_config(mode="neurons")
    masks = density_masks(2, 32, seed=7)
    recorded = BatchedEvaluator(features, config).evaluate(masks)
    for evaluation, model, mask in zip(recorded, retrain(features, config, masks), masks, strict=True):
        assert (model.evaluation.accuracy, model.evaluation.auroc) == (evaluation.accuracy, evaluation.auroc)
        (outputs,) = model.folds
        np.testing.assert_array_equal(outputs.kept[1], np.flatnonzero(mask))
        assert outputs.params[0].shape == (64, mask.sum())


def test_test_split_and_folds_are_scored_like_the_evaluator():
    features = with_test_split(digits_feature_set(samples=300))
    config = small_config()
    masks = density_masks(2, 64, seed=8)
    recorded = BatchedEvaluator(features, config).evaluate(masks)
    for evaluation, model in zip(recorded, retrain(features, config, masks), strict=True):
        assert model.folds[0].test_logits is not None and model.folds[0].test_ood_logits is not None
        assert (model.evaluation.test_accuracy, model.evaluation.test_auroc) == (
            evaluation.test_accuracy,
            evaluation.test_auroc,
        )
    folded = digits_feature_set(samples=300, folds=2)
    recorded = BatchedEvaluator(folded, config).evaluate(masks)
    models = retrain(folded, config, masks, keep_weights=[1])
    for evaluation, model in zip(recorded, models, strict=True):
        assert len(model.folds) == 2
        assert (model.evaluation.accuracy, model.evaluation.auroc) == (evaluation.accuracy, evaluation.auroc)
    # weights are kept only where asked: logits are all most analyses need
    assert [len(outputs.params) for model in models for outputs in model.folds] == [0, 0, 3, 3]


def test_masks_of_the_wrong_shape_are_refused(digits_features):
    with pytest.raises(MaskError, match=r"\(P, 64\)"):
        retrain(digits_features, small_config(), np.ones((2, 63), dtype=bool))
