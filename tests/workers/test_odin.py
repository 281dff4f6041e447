"""ODIN scores and the exact AUROC, checked against scikit-learn including ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evoprune.workers.odin import auroc, odin_scores


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_with_ties(seed: int) -> None:
    generator = np.random.default_rng(seed)
    positives = generator.integers(0, 6, size=50).astype(float)  # few values: many ties
    negatives = generator.integers(0, 6, size=70).astype(float)
    labels = np.r_[np.ones(50), np.zeros(70)]
    expected = roc_auc_score(labels, np.r_[positives, negatives])
    assert auroc(positives, negatives) == pytest.approx(expected, abs=1e-12)


def test_auroc_on_odin_scores_equals_sklearn() -> None:
    generator = np.random.default_rng(9)
    inside = odin_scores(generator.normal(0, 5, size=(40, 4)), 1000.0)
    outside = odin_scores(generator.normal(0, 1, size=(40, 4)), 1000.0)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(40)], np.r_[inside, outside])
    assert auroc(inside, outside) == pytest.approx(expected, abs=1e-12)


def test_odin_score_is_temperature_scaled_max_softmax() -> None:
    logits = np.array([[2.0, 1.0, -1.0]])
    scaled = logits / 1000.0
    softmax = np.exp(scaled) / np.exp(scaled).sum()
    assert odin_scores(logits, 1000.0)[0] == pytest.approx(softmax.max(), rel=1e-12)


def test_auroc_needs_both_groups() -> None:
    with pytest.raises(ValueError, match="at least one"):
        auroc(np.array([]), np.array([1.0]))
