"""Whether an exported model reproduces the search: its predictions against the re-trained head's logits."""

from __future__ import annotations

import numpy as np

from evoprune.shared.config import RobustnessConfig
from evoprune.workers.evaluation.odin import ood_auroc
from evoprune.workers.export.report import Comparison

# A reloaded model may disagree with the search's logits only on samples whose two best classes are this
# close (relative to the larger logit): the search sums in fixed chunks of 128 terms, a Dense layer in its
# own order, so float32 rounding can differ in the last bits.
TIE_LOGIT_GAP = 1e-5


class ExportMismatchError(Exception):
    """The written model does not reproduce what the search recorded."""


def compare_predictions(probabilities: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> Comparison:
    """Compare a reloaded model's probabilities with the search's logits on the same samples.

    Args:
        probabilities: (N, C) from the exported model.
        logits: (N, C) the re-trained head's logits (those the recorded accuracy was computed from).
        labels: (N,) true classes.

    Returns:
        Both accuracies, how many predictions differ, how many of those are not at a near-tie (the top two
        logits within TIE_LOGIT_GAP of each other, relatively), the largest probability difference, and
        `reproduced`: no unexplained difference.

    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = shifted / shifted.sum(axis=1, keepdims=True)
    exported = np.argmax(probabilities, axis=1)
    searched = np.argmax(logits, axis=1)
    differ = np.flatnonzero(exported != searched)
    top_two = np.sort(logits[differ], axis=1)[:, -2:]
    gap = (top_two[:, 1] - top_two[:, 0]) / np.maximum(1.0, np.abs(top_two[:, 1]))
    unexplained = int(np.count_nonzero(gap > TIE_LOGIT_GAP))
    exported_accuracy = float(np.mean(exported == labels))
    retrained_accuracy = float(np.mean(searched == labels))
    return {
        "samples": len(labels),
        "retrained_accuracy": retrained_accuracy,
        "exported_accuracy": exported_accuracy,
        "exact": exported_accuracy == retrained_accuracy and len(differ) == 0,
        "disagreements": len(differ),
        "unexplained": unexplained,
        "max_probability_difference": float(np.max(np.abs(probabilities - expected))),
        "reproduced": unexplained == 0,
    }


def probability_auroc(
    probabilities: np.ndarray, ood_probabilities: np.ndarray, robustness: RobustnessConfig
) -> float:
    """The robustness objective measured on a model that outputs probabilities, not logits.

    The ODIN score is computed from log-probabilities, which equal the logits up to a constant per sample
    (softmax ignores such a constant), so a float model gives the search's AUROC to float error. A
    probability that rounds to zero (below float32's smallest normal number, or an int8 model's output
    step of 1/256) counts as that smallest number.

    Args:
        probabilities: (N, C) on the fitness split.
        ood_probabilities: (M, C) on the fold's OoD samples.
        robustness: the experiment's temperature, estimator and score precision.

    Returns:
        The AUROC.

    """
    tiny = np.finfo(np.float32).tiny

    def logits(values: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(np.asarray(values, dtype=np.float64), tiny))

    return ood_auroc(
        logits(probabilities),
        logits(ood_probabilities),
        robustness.temperature,
        robustness.auroc_estimator,
        robustness.score_precision,
    )
