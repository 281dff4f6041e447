"""How an ensemble's members combine (majority vote, mean softmax) and the ensemble's scores on a split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoprune.workers.evaluation.odin import AUROC_ESTIMATORS, odin_scores
from evoprune.workers.features.feature_set import Split

# How an ensemble combines its members: the analysis's majority vote, and the average of the members'
# softmax outputs (what an exported ensemble model computes by default)
MEAN = "mean"
VOTE = "vote"
COMBINES = (MEAN, VOTE)


def majority_vote(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """The class most members predict for each sample; a tie goes to the smallest class index.

    Args:
        predictions: (P, N) predicted classes of P members on N samples.
        num_classes: C.

    Returns:
        (N,) voted classes.

    """
    predictions = np.asarray(predictions, dtype=np.int64)
    votes = np.zeros((num_classes, predictions.shape[1]), dtype=np.int64)
    for row in predictions:
        np.add.at(votes, (row, np.arange(predictions.shape[1])), 1)
    return np.argmax(votes, axis=0)  # argmax keeps the first (smallest) class among equal counts


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities of (N, C) logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def combined_outputs(logits: Sequence[np.ndarray], combine: str) -> np.ndarray:
    """What an ensemble outputs per sample and class, from its members' logits.

    Args:
        logits: per member, (N, C) logits.
        combine: `mean`: the members' softmax probabilities averaged; `vote`: each class's share of the
            members' votes (their argmax), whose argmax is `majority_vote`'s class, ties included (shares
            are exact multiples of 1/P, and argmax keeps the first, smallest, class among equal ones).

    Returns:
        (N, C) float64 outputs that sum to 1 per sample.

    """
    if combine == MEAN:
        return np.mean([softmax(member) for member in logits], axis=0)
    if combine == VOTE:
        num_classes = np.asarray(logits[0]).shape[-1]
        votes = [np.eye(num_classes)[np.argmax(member, axis=-1)] for member in logits]
        return np.sum(votes, axis=0) / len(logits)
    raise ValueError(f"unknown combination {combine!r}; choose one of {', '.join(COMBINES)}")


def combined_accuracy(logits: Sequence[np.ndarray], labels: np.ndarray, combine: str) -> float:
    """Accuracy of an ensemble on one split: the argmax of `combined_outputs` against the labels."""
    if combine == VOTE:
        predicted = majority_vote(
            np.stack([np.argmax(member, axis=-1) for member in logits]), logits[0].shape[-1]
        )
    else:
        predicted = np.argmax(combined_outputs(logits, combine), axis=-1)
    return float(np.mean(predicted == labels))


def ensemble_objectives(
    logits: Sequence[np.ndarray],
    ood_logits: Sequence[np.ndarray],
    split: Split,
    num_classes: int,
    temperature: float,
    estimator: str = "exact",
) -> tuple[float, float]:
    """Accuracy of the majority vote and AUROC of the members' mean ODIN score, on one split.

    Args:
        logits: per member, (N, C) logits on the in-distribution split.
        ood_logits: per member, (M, C) logits on the OoD samples.
        split: the in-distribution split (its labels).
        num_classes: C.
        temperature: the ODIN temperature.
        estimator: the AUROC estimator ("exact" or "reference", as `robustness.auroc_estimator`).

    Returns:
        (accuracy, AUROC).

    """
    accuracy = combined_accuracy(logits, split.labels, VOTE)
    inside = np.mean([odin_scores(member, temperature) for member in logits], axis=0)
    outside = np.mean([odin_scores(member, temperature) for member in ood_logits], axis=0)
    return accuracy, AUROC_ESTIMATORS[estimator](inside, outside)
