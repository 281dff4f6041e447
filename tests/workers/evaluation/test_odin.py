"""ODIN scores, the exact AUROC (against scikit-learn, with ties), the reference estimator (golden cases)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evoprune.workers.evaluation.odin import auroc, odin_scores, ood_auroc, reference_auroc


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


# Golden cases of the reference estimator, computed by hand from its definition: thresholds at the sorted
# in-distribution scores' indices int(n·q), q = 0.99999999, 0.98, ..., 0.01, 0; "in" when strictly above;
# TPR forced to 0 at the first threshold and 1 at the last; (1, 1) appended; trapezoid rule over FPR.
@pytest.mark.parametrize(
    ("positives", "negatives", "reference", "exact"),
    [
        # constant scores: every point but the forced last sits at FPR 0, the end (1, 1) closes a full square
        ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 1.0, 0.5),
        # perfectly separated: no OoD score lies above any in-distribution threshold
        ([0.6, 0.7, 0.8, 0.9], [0.1, 0.2], 1.0, 1.0),
        # reversed: every OoD score lies above every threshold, all points at FPR 1
        ([0.1, 0.2], [0.8, 0.9], 0.0, 0.0),
        # ties across the groups: thresholds 0.8 (q >= 0.75), 0.4 (0.25 <= q < 0.75), 0.2 (q < 0.25) give
        # (FPR, TPR) = (0, 0), (1/3, 1/4), (2/3, 3/4), then the forced (2/3, 1) and the end (1, 1):
        # 1/3·1/8 + 1/3·1/2 + 1/3·1 = 13/24; the exact statistic counts 7 of 12 pairs
        ([0.2, 0.4, 0.4, 0.8], [0.1, 0.4, 0.6], 13 / 24, 7 / 12),
        # one in-distribution sample: every threshold is 0.5, so FPR stays 1/2 while TPR goes 0 → 1 (forced)
        # at that FPR; only the last segment, (1/2, 1) to (1, 1), has area
        ([0.5], [0.2, 0.7], 0.5, 0.5),
    ],
    ids=["constant", "separated", "reversed", "ties", "single"],
)
def test_reference_estimator_golden_cases(positives, negatives, reference, exact) -> None:
    assert reference_auroc(np.array(positives), np.array(negatives)) == pytest.approx(reference, abs=1e-15)
    assert auroc(np.array(positives), np.array(negatives)) == pytest.approx(exact, abs=1e-15)


def _literal_reference(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The reference estimator step by step with loops, as its definition reads."""
    ordered = np.sort(positives)
    levels = [0.99999999] + [index / 100 for index in range(98, -1, -1)]
    points = []
    for position, level in enumerate(levels):
        threshold = ordered[int(len(ordered) * level)]
        tpr = sum(score > threshold for score in positives) / len(positives)
        fpr = sum(score > threshold for score in negatives) / len(negatives)
        if position == 0:
            tpr = 0.0
        if position == len(levels) - 1:
            tpr = 1.0
        points.append((fpr, tpr))
    points.append((1.0, 1.0))
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))


@pytest.mark.parametrize("seed", range(4))
def test_reference_estimator_matches_its_definition_step_by_step(seed: int) -> None:
    generator = np.random.default_rng(seed)
    for _ in range(25):
        positives = generator.normal(0.5, 1.0, size=int(generator.integers(1, 300)))
        negatives = generator.normal(0.0, 1.0, size=int(generator.integers(1, 300)))
        if seed % 2:
            positives, negatives = np.round(positives, 1), np.round(negatives, 1)  # many ties
        # exact levels (k/100) here against the float range there: the same indices on these sizes
        assert reference_auroc(positives, negatives) == pytest.approx(
            _literal_reference(positives, negatives), abs=1e-12
        )


def test_reference_estimator_stays_within_a_grid_step_of_the_exact_one() -> None:
    # 200 random continuous cases: the 100-threshold grid moves the estimate by well under 0.01
    generator = np.random.default_rng(11)
    differences = []
    for _ in range(200):
        positives = generator.normal(generator.uniform(0, 2), 1.0, size=int(generator.integers(100, 600)))
        negatives = generator.normal(0.0, 1.0, size=int(generator.integers(100, 600)))
        differences.append(reference_auroc(positives, negatives) - auroc(positives, negatives))
    assert max(abs(d) for d in differences) < 0.01


def test_ood_auroc_selects_the_estimator_and_refuses_unknown_ones() -> None:
    # logits that do not depend on the input (the zero mask's): constant ODIN scores
    constant = np.tile([0.3, -0.1, 0.2], (8, 1))
    assert ood_auroc(constant, constant[:5], 1000.0, "exact") == 0.5
    assert ood_auroc(constant, constant[:5], 1000.0, "reference") == 1.0
    with pytest.raises(ValueError, match="unknown AUROC estimator"):
        ood_auroc(constant, constant, 1000.0, "roc")
    with pytest.raises(ValueError, match="at least one"):
        reference_auroc(np.array([]), np.array([1.0]))


def _reference_float32_scores(logits: np.ndarray) -> np.ndarray:
    """The reference's ODIN score in float32, transcribed from its described order of operations
    (ood.ood_detection with type_ood="odin": np_softmax(logits / 1000, axis=1), then the row maximum)."""
    scaled = logits.astype(np.float32) / 1000
    shifted = np.exp(scaled - np.amax(scaled, axis=1, keepdims=True))
    return np.max(shifted / np.sum(shifted, axis=1, keepdims=True), axis=1)


def test_float32_scores_follow_the_reference_arithmetic() -> None:
    rng = np.random.default_rng(5)
    differing = 0
    for _ in range(50):
        classes = int(rng.integers(2, 30))
        logits = (rng.normal(size=(int(rng.integers(1, 400)), classes)) * rng.uniform(0.1, 40)).astype(
            np.float32
        )
        expected = _reference_float32_scores(logits)
        scores = odin_scores(logits, 1000.0, "float32")
        assert scores.dtype == np.float64
        assert np.array_equal(scores, expected.astype(np.float64))
        differing += not np.array_equal(scores, odin_scores(logits, 1000.0))
    # the option is not a no-op: float64 scores differ from float32 ones on most sets
    assert differing >= 45


def test_ood_auroc_takes_the_score_precision() -> None:
    rng = np.random.default_rng(6)
    inside = (rng.normal(size=(300, 5)) * 8).astype(np.float32)
    outside = (rng.normal(size=(300, 5)) * 4).astype(np.float32)
    for estimator in ("exact", "reference"):
        expected = {"exact": auroc, "reference": reference_auroc}[estimator](
            _reference_float32_scores(inside), _reference_float32_scores(outside)
        )
        assert ood_auroc(inside, outside, 1000.0, estimator, "float32") == expected
    with pytest.raises(ValueError, match="unknown score precision"):
        ood_auroc(inside, outside, 1000.0, "exact", "float16")
