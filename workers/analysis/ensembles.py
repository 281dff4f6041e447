"""Ensembles of front members over percentile windows of the front's accuracies: vote and mean softmax."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoprune.workers.analysis.windows import percentile_windows, window_members

# re-exported: how members combine is shared with the exported ensemble models (workers.export)
from evoprune.workers.evaluation.ensemble_scores import (
    COMBINES,
    MEAN,
    VOTE,
    combined_accuracy,
    combined_outputs,
    ensemble_objectives,
    majority_vote,
    softmax,
)
from evoprune.workers.evaluation.retrain import RetrainedModel
from evoprune.workers.features.feature_set import FeatureSet

__all__ = [
    "COMBINES",
    "MEAN",
    "VOTE",
    "WindowEnsemble",
    "combined_accuracy",
    "combined_outputs",
    "ensemble_objectives",
    "majority_vote",
    "percentile_windows",
    "softmax",
    "window_ensembles",
    "window_members",
]


@dataclass(frozen=True)
class WindowEnsemble:
    """One percentile window's ensemble against its best single member."""

    window: tuple[int, int]
    accuracy_range: tuple[float, float]  # the window's bounds in accuracy
    members: tuple[int, ...]  # indices into the models given to `window_ensembles`
    accuracy: float | None  # None for an empty window
    auroc: float | None
    best_member: int | None  # the most accurate member (then highest AUROC, then first)
    best_accuracy: float | None
    best_auroc: float | None
    test_accuracy: float | None = None  # with fitness_split = validation
    test_auroc: float | None = None
    best_test_accuracy: float | None = None
    best_test_auroc: float | None = None
    softmax_accuracy: float | None = None  # the members' mean softmax (an exported ensemble's), not the vote
    test_softmax_accuracy: float | None = None


def _mean_over_folds(
    models: list[RetrainedModel], feature_set: FeatureSet, temperature: float, test: bool, estimator: str
) -> tuple[float, float, float] | None:
    """The ensemble's (vote accuracy, AUROC, mean-softmax accuracy) averaged over folds.

    None for test when there is no test split.
    """
    scores = []
    for fold_index, fold in enumerate(feature_set.folds):
        outputs = [model.folds[fold_index] for model in models]
        if not test:
            logits = [o.evaluation_logits for o in outputs]
            ood = [o.ood_logits for o in outputs]
            split = fold.evaluation
        else:
            test_logits = [o.test_logits for o in outputs if o.test_logits is not None]
            test_ood = [o.test_ood_logits for o in outputs if o.test_ood_logits is not None]
            if fold.test is None or len(test_logits) != len(outputs) or len(test_ood) != len(outputs):
                return None
            logits, ood, split = test_logits, test_ood, fold.test
        accuracy, auroc = ensemble_objectives(
            logits, ood, split, feature_set.num_classes, temperature, estimator
        )
        scores.append((accuracy, auroc, combined_accuracy(logits, split.labels, MEAN)))
    return (
        float(np.mean([s[0] for s in scores])),
        float(np.mean([s[1] for s in scores])),
        float(np.mean([s[2] for s in scores])),
    )


def window_ensembles(
    models: list[RetrainedModel],
    feature_set: FeatureSet,
    temperature: float,
    windows: Sequence[tuple[int, int]] | None = None,
    estimator: str = "exact",
) -> list[WindowEnsemble]:
    """Build the ensemble of every percentile window and score it like a single model.

    Accuracy and AUROC are taken per fold and averaged over folds, as the fitness is.

    Args:
        models: the re-trained front members.
        feature_set: the features they were trained on.
        temperature: the ODIN temperature.
        windows: percentile windows; the paper's eight when None.
        estimator: the AUROC estimator, as the experiment's `robustness.auroc_estimator`.

    Returns:
        One WindowEnsemble per window, in window order.

    """
    if not models:
        raise ValueError("no models to build ensembles from")
    accuracies = np.array([model.evaluation.accuracy for model in models])
    results = []
    for window in windows or percentile_windows():
        bounds = (int(window[0]), int(window[1]))
        low, high = (float(value) for value in np.percentile(accuracies, bounds))
        members = window_members(accuracies, bounds)
        if len(members) == 0:
            results.append(WindowEnsemble(bounds, (low, high), (), None, None, None, None, None))
            continue
        chosen = [models[m] for m in members]
        best = max(members, key=lambda m: (models[m].evaluation.accuracy, models[m].evaluation.auroc, -m))
        scores = _mean_over_folds(chosen, feature_set, temperature, test=False, estimator=estimator)
        assert scores is not None
        test_scores = _mean_over_folds(chosen, feature_set, temperature, test=True, estimator=estimator)
        best_evaluation = models[best].evaluation
        results.append(
            WindowEnsemble(
                window=bounds,
                accuracy_range=(low, high),
                members=tuple(int(m) for m in members),
                accuracy=scores[0],
                auroc=scores[1],
                best_member=int(best),
                best_accuracy=best_evaluation.accuracy,
                best_auroc=best_evaluation.auroc,
                test_accuracy=None if test_scores is None else test_scores[0],
                test_auroc=None if test_scores is None else test_scores[1],
                best_test_accuracy=best_evaluation.test_accuracy,
                best_test_auroc=best_evaluation.test_auroc,
                softmax_accuracy=scores[2],
                test_softmax_accuracy=None if test_scores is None else test_scores[2],
            )
        )
    return results
