import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import roc_auc_score

from evoprune.shared.objectives import Evaluation
from evoprune.workers.analysis.ensembles import (
    ensemble_objectives,
    majority_vote,
    percentile_windows,
    window_ensembles,
    window_members,
)
from evoprune.workers.evaluation.retrain import FoldOutputs, RetrainedModel
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

TEMPERATURE = 1000.0
CLASSES = 4


def odin(logits):
    return special.softmax(np.asarray(logits, dtype=np.float64) / TEMPERATURE, axis=-1).max(axis=-1)


def direct_auroc(inside_logits, outside_logits):
    inside = np.mean([odin(member) for member in inside_logits], axis=0)
    outside = np.mean([odin(member) for member in outside_logits], axis=0)
    truth = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return roc_auc_score(truth, np.r_[inside, outside])


def synthetic_models(count, samples=60, ood=50, folds=1, seed=0, with_test=False):
    """Models whose logits are noisy copies of the truth: more noise, lower accuracy.

    with_test: the folds also carry a test split (the evaluation split again) with test logits.
    """
    rng = np.random.default_rng(seed)
    built_folds = []
    labels = []
    for _ in range(folds):
        fold_labels = rng.integers(0, CLASSES, size=samples)
        labels.append(fold_labels)
        split = Split(rng.random((samples, 3)).astype(np.float32), fold_labels)
        ood_rows = rng.random((ood, 3)).astype(np.float32)
        test = (split, ood_rows) if with_test else (None, None)
        built_folds.append(Fold(split, split, ood_rows, *test))
    features = FeatureSet("synthetic", CLASSES, tuple(built_folds))
    models = []
    for index in range(count):
        noise = 0.5 + 3.0 * index / count
        outputs = []
        scores = []
        for fold_labels in labels:
            logits = np.eye(CLASSES)[fold_labels] * 2.0 + rng.normal(0, noise, (samples, CLASSES))
            ood_logits = rng.normal(0, noise, (ood, CLASSES))
            test_logits = (logits[::-1].copy(), ood_logits[::-1].copy()) if with_test else (None, None)
            outputs.append(FoldOutputs((), (), 1, logits, ood_logits, *test_logits))
            scores.append((np.mean(logits.argmax(1) == fold_labels), direct_auroc([logits], [ood_logits])))
        evaluation = Evaluation(
            float(np.mean([s[0] for s in scores])), 0.5, float(np.mean([s[1] for s in scores]))
        )
        models.append(RetrainedModel(np.ones(3, bool), tuple(outputs), evaluation))
    return models, features


def test_the_papers_eight_windows():
    assert percentile_windows() == [(low, low + 10) for low in (50, 55, 60, 65, 70, 75, 80, 85)]
    assert percentile_windows(0, 90, 45, 10) == [(0, 10), (45, 55), (90, 100)]
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile_windows(90, 95, 5, 10)


def test_window_members_follow_numpys_percentiles():
    accuracies = np.array([0.5, 0.9, 0.7, 0.7, 0.95, 0.8, 0.85, 0.6, 0.99, 0.75])
    for window in percentile_windows():
        low, high = np.percentile(accuracies, window)
        expected = [i for i, value in enumerate(accuracies) if low <= value <= high]
        assert window_members(accuracies, window).tolist() == expected
    # the accuracies can jump over a window
    assert window_members(np.array([0.0, 1.0]), (50, 60)).tolist() == []


def test_majority_vote_equals_the_mode_with_ties_to_the_smallest_class():
    rng = np.random.default_rng(1)
    predictions = rng.integers(0, CLASSES, size=(4, 500))  # four voters: many ties
    expected = stats.mode(predictions, axis=0, keepdims=False).mode
    np.testing.assert_array_equal(majority_vote(predictions, CLASSES), expected)
    np.testing.assert_array_equal(majority_vote(np.array([[2, 1], [1, 2]]), CLASSES), [1, 1])


def test_ensemble_objectives_match_sklearn():
    models, features = synthetic_models(5)
    fold = features.folds[0]
    logits = [m.folds[0].evaluation_logits for m in models]
    ood = [m.folds[0].ood_logits for m in models]
    accuracy, auroc = ensemble_objectives(logits, ood, fold.evaluation, CLASSES, TEMPERATURE)
    voted = stats.mode(np.stack([x.argmax(1) for x in logits]), axis=0, keepdims=False).mode
    assert accuracy == np.mean(voted == fold.evaluation.labels)
    assert auroc == pytest.approx(direct_auroc(logits, ood), abs=1e-12)


@pytest.mark.parametrize(("folds", "with_test"), [(1, False), (2, False), (1, True)])
def test_window_ensembles_against_a_direct_computation(folds, with_test):
    models, features = synthetic_models(20, folds=folds, seed=folds, with_test=with_test)
    accuracies = np.array([m.evaluation.accuracy for m in models])
    results = window_ensembles(models, features, TEMPERATURE)
    assert [r.window for r in results] == percentile_windows()
    for result in results:
        low, high = np.percentile(accuracies, result.window)
        members = [i for i, value in enumerate(accuracies) if low <= value <= high]
        assert list(result.members) == members
        assert result.accuracy_range == pytest.approx((low, high))
        if not members:
            assert result.accuracy is None and result.best_member is None
            continue
        fold_scores = []
        for fold_index, fold in enumerate(features.folds):
            logits = [models[i].folds[fold_index].evaluation_logits for i in members]
            ood = [models[i].folds[fold_index].ood_logits for i in members]
            voted = stats.mode(np.stack([x.argmax(1) for x in logits]), axis=0, keepdims=False).mode
            mean = np.mean([special.softmax(x.astype(np.float64), axis=1) for x in logits], axis=0)
            fold_scores.append(
                (
                    np.mean(voted == fold.evaluation.labels),
                    direct_auroc(logits, ood),
                    np.mean(mean.argmax(1) == fold.evaluation.labels),
                )
            )
        assert result.accuracy == pytest.approx(np.mean([s[0] for s in fold_scores]), abs=1e-12)
        assert result.softmax_accuracy == pytest.approx(np.mean([s[2] for s in fold_scores]), abs=1e-12)
        assert result.auroc == pytest.approx(np.mean([s[1] for s in fold_scores]), abs=1e-12)
        best = max(members, key=lambda i: (accuracies[i], models[i].evaluation.auroc, -i))
        assert result.best_member == best
        assert result.best_accuracy == models[best].evaluation.accuracy
        if not with_test:
            assert result.test_accuracy is None
            continue
        fold = features.folds[0]
        logits = [models[i].folds[0].test_logits for i in members]
        ood = [models[i].folds[0].test_ood_logits for i in members]
        voted = stats.mode(np.stack([x.argmax(1) for x in logits]), axis=0, keepdims=False).mode
        assert result.test_accuracy == np.mean(voted == fold.test.labels)
        assert result.test_auroc == pytest.approx(direct_auroc(logits, ood), abs=1e-12)
    assert sum(bool(r.members) for r in results) >= 6


def test_no_models_is_an_error():
    _, features = synthetic_models(1)
    with pytest.raises(ValueError, match="no models"):
        window_ensembles([], features, TEMPERATURE)


def test_vote_shares_argmax_to_the_majority_vote_ties_included():
    from evoprune.workers.analysis.ensembles import combined_accuracy, combined_outputs

    # three samples: a clear majority, a two-two tie (to the smaller class), a four-way tie (class 0)
    predicted = np.array([[2, 1, 3], [2, 1, 2], [2, 3, 1], [0, 3, 0]])
    logits = [np.eye(CLASSES)[row] * 5.0 for row in predicted]
    shares = combined_outputs(logits, "vote")
    assert shares.tolist()[0] == [0.25, 0.0, 0.75, 0.0]
    assert np.argmax(shares, axis=1).tolist() == majority_vote(predicted, CLASSES).tolist() == [2, 1, 0]
    labels = np.array([2, 3, 0])
    assert combined_accuracy(logits, labels, "vote") == pytest.approx(2 / 3)
    # mean: the members' softmax probabilities averaged
    mean = combined_outputs(logits, "mean")
    np.testing.assert_allclose(mean, np.mean([special.softmax(m, axis=-1) for m in logits], axis=0))
    assert combined_accuracy(logits, labels, "mean") == float(np.mean(np.argmax(mean, axis=1) == labels))
