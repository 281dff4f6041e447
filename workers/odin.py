"""OoD robustness: the ODIN score (temperature-scaled max softmax) and the exact AUROC."""

from __future__ import annotations

import numpy as np


def odin_scores(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Max softmax of logits / T, without input perturbation (as the reference used it).

    Args:
        logits: (..., classes) array.
        temperature: T; 1000 in the reference.

    Returns:
        (...) array of scores in (1/classes, 1]; computed in float64 because at T = 1000 the softmax is
        nearly flat and float32 would tie most samples.
    """
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
