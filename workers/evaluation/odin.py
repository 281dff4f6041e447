"""OoD robustness: the ODIN score (temperature-scaled max softmax) and two AUROC estimators of it."""

from __future__ import annotations

import numpy as np

SCORE_PRECISIONS = ("float64", "float32")


def odin_scores(logits: np.ndarray, temperature: float, precision: str = "float64") -> np.ndarray:
    """Max softmax of logits / T, without input perturbation (as the reference used it).

    Args:
        logits: (..., classes) array.
        temperature: T; 1000 in the reference.
        precision: "float64" (the default: at T = 1000 the softmax is nearly flat and float32 ties many
            samples) or "float32", the reference's arithmetic in its order: the float32 logits divided by
            T, shifted by their maximum, exponentiated, each divided by their sum, and the maximum taken.

    Returns:
        (...) array of scores in (1/classes, 1], float64 (float32 values widened under "float32").
    """
    if precision == "float32":
        # the reference's ood.py (`np_softmax` then `np.max`) on float32 logits; every step stays float32
        scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
        exponentials = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
        softmax = exponentials / exponentials.sum(axis=-1, keepdims=True)
        return softmax.max(axis=-1).astype(np.float64)
    if precision != "float64":
        raise ValueError(f"unknown score precision {precision!r}; known: {', '.join(SCORE_PRECISIONS)}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exponentials = np.exp(scaled)
    return 1.0 / exponentials.sum(axis=-1)  # max(softmax) = exp(0) / sum after the shift


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """The exact AUROC as the rank statistic, ties counted half.

    Equals `sklearn.metrics.roc_auc_score` with positives labelled 1 on the same scores.

    Args:
        positive_scores: scores of in-distribution samples (the positive class).
        negative_scores: scores of OoD samples.

    Returns:
        P(score_pos > score_neg) + 0.5 P(score_pos == score_neg).
    """
    positives = np.asarray(positive_scores, dtype=np.float64).ravel()
    negatives = np.asarray(negative_scores, dtype=np.float64).ravel()
    if positives.size == 0 or negatives.size == 0:
        raise ValueError("AUROC needs at least one in-distribution and one OoD score")
    combined = np.concatenate([positives, negatives])
    order = np.argsort(combined, kind="mergesort")
    sorted_scores = combined[order]
    # Average ranks over runs of tied scores (1-based), the Mann-Whitney form of the AUROC.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [sorted_scores.size]])
    average_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(combined.size, dtype=np.float64)
    ranks[order] = np.repeat(average_rank, ends - starts)
    positive_rank_sum = ranks[: positives.size].sum()
    u_statistic = positive_rank_sum - positives.size * (positives.size + 1) / 2.0
    return float(u_statistic / (positives.size * negatives.size))


# The reference estimator's true-positive-rate levels, highest first: 0.99, 0.98, ..., 0.01, 0.00 built as
# a float range (so n·level truncates exactly as the reference's does), the first raised to 0.99999999 so
# that its threshold is the largest in-distribution score.
_REFERENCE_LEVELS = np.arange(0.0, 1.0, 0.01)[::-1].copy()
_REFERENCE_LEVELS[0] = 0.99999999


def reference_auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """The AUROC as the reference implementation estimates it: 100 thresholds and the trapezoid rule.

    Thresholds are in-distribution scores at 100 quantile positions: for each level q in (0.99999999, 0.98,
    0.97, ..., 0.01, 0) the sorted in-distribution score at index int(n·q), so from the largest score
    down to the smallest. A sample counts as in-distribution when its score is strictly above the
    threshold. The true-positive rate is forced to 0 at the first (highest) threshold and to 1 at the last
    (lowest); the false-positive rate is never forced. The point (1, 1) is appended and the curve
    integrated over the false-positive rate with the trapezoid rule.

    Consequences worth knowing: the value is at most one grid step from the exact one on continuous
    scores, tends to lie slightly below it, and constant scores (a head whose logits do not depend on the
    input, such as the zero mask's) give 1.0 where the exact statistic gives 0.5, because nothing lies
    strictly above any threshold until the forced end point.

    Args:
        positive_scores: scores of in-distribution samples (the positive class).
        negative_scores: scores of OoD samples.

    Returns:
        The estimate, in [0, 1].

    """
    positives = np.sort(np.asarray(positive_scores, dtype=np.float64).ravel())
    negatives = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())
    if positives.size == 0 or negatives.size == 0:
        raise ValueError("AUROC needs at least one in-distribution and one OoD score")
    thresholds = positives[(positives.size * _REFERENCE_LEVELS).astype(np.int64)]
    # how many scores lie strictly above each threshold, from the sorted arrays
    true_positive = 1.0 - np.searchsorted(positives, thresholds, side="right") / positives.size
    false_positive = 1.0 - np.searchsorted(negatives, thresholds, side="right") / negatives.size
    true_positive[0], true_positive[-1] = 0.0, 1.0
    x = np.append(false_positive, 1.0)
    y = np.append(true_positive, 1.0)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


AUROC_ESTIMATORS = {"exact": auroc, "reference": reference_auroc}


def ood_auroc(
    logits: np.ndarray,
    ood_logits: np.ndarray,
    temperature: float,
    estimator: str = "exact",
    precision: str = "float64",
) -> float:
    """The robustness objective: the AUROC of ODIN scores, in-distribution samples as positives.

    Args:
        logits: (n, classes) logits of the in-distribution samples.
        ood_logits: (m, classes) logits of the OoD samples.
        temperature: the ODIN temperature.
        estimator: "exact" (the rank statistic) or "reference" (`reference_auroc`).
        precision: the arithmetic of the ODIN scores (see `odin_scores`).

    Returns:
        The AUROC.

    """
    try:
        measure = AUROC_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(
            f"unknown AUROC estimator {estimator!r}; known: {', '.join(AUROC_ESTIMATORS)}"
        ) from None
    return measure(
        odin_scores(logits, temperature, precision), odin_scores(ood_logits, temperature, precision)
    )
