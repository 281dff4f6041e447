"""The screening rule and budget: ranks on low-fidelity objectives, the optimism margin, the epoch count."""

from __future__ import annotations

import numpy as np
import pytest

from evoprune.shared.config import ScreeningConfig, TrainingConfig
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest, ScreeningRule, screening_epochs

# minimisation vectors (1 - accuracy, active fraction, 1 - AUROC): a front of two and one behind them
PARENTS = np.array([[0.10, 0.50, 0.20], [0.20, 0.30, 0.10], [0.30, 0.60, 0.40]])


def test_a_dominated_candidate_is_hopeless_and_a_non_dominated_one_is_not():
    rule = ScreeningRule()
    assert rule.hopeless(np.array([0.15, 0.55, 0.25]), PARENTS)  # behind the first parent everywhere
    assert not rule.hopeless(np.array([0.15, 0.20, 0.25]), PARENTS)  # sparser than every parent
    assert not rule.hopeless(np.array([0.10, 0.50, 0.20]), PARENTS)  # equal to a parent: not dominated


def test_max_rank_admits_deeper_fronts():
    second_front = np.array([0.35, 0.65, 0.45])  # behind the third parent, which is itself rank 1
    assert ScreeningRule(max_rank=0).hopeless(second_front, PARENTS)
    assert ScreeningRule(max_rank=1).hopeless(second_front, PARENTS)
    assert not ScreeningRule(max_rank=2).hopeless(second_front, PARENTS)


def test_the_margin_is_optimism_in_accuracy_and_auroc_only():
    near = np.array([0.12, 0.50, 0.22])  # 0.02 behind the first parent in accuracy and AUROC
    assert ScreeningRule().hopeless(near, PARENTS)
    assert ScreeningRule(margin=0.019).hopeless(near, PARENTS)
    assert not ScreeningRule(margin=0.021).hopeless(near, PARENTS)
    # the active fraction is exact at any budget: a margin never moves it
    only_denser = np.array([0.30, 0.70, 0.40])
    assert ScreeningRule(margin=0.09).hopeless(only_denser, np.array([[0.20, 0.60, 0.30]]))
    assert not ScreeningRule(margin=0.11).hopeless(only_denser, np.array([[0.20, 0.60, 0.30]]))


def test_nothing_is_hopeless_against_no_parents():
    assert not ScreeningRule().hopeless(np.array([0.9, 1.0, 0.9]), np.zeros((0, 3)))


def test_budget_epochs_round_and_vanish_when_nothing_would_be_saved():
    training = TrainingConfig(max_epochs=600)
    assert screening_epochs(ScreeningConfig(), training) is None  # off by default
    assert screening_epochs(ScreeningConfig(enabled=True), training) == 60
    assert screening_epochs(ScreeningConfig(enabled=True, budget=0.001), training) == 1
    assert screening_epochs(ScreeningConfig(enabled=True, budget=0.9), TrainingConfig(max_epochs=1)) is None


def test_requests_check_their_assignment_and_slice_with_their_masks():
    request = ScreeningRequest(6, ScreeningRule(), (PARENTS,), np.array([-1, 0, 0]))
    assert request.screened.tolist() == [False, True, True]
    assert not request.hopeless(0, np.array([0.9, 0.9, 0.9]))  # not judged
    assert request.hopeless(1, np.array([0.9, 0.9, 0.9]))
    assert request.sliced(1, 3).assignment.tolist() == [0, 0]
    for bad in ([1], [-2]):
        with pytest.raises(ValueError, match="assignment"):
            ScreeningRequest(6, ScreeningRule(), (PARENTS,), np.array(bad))
    with pytest.raises(ValueError, match="at least one epoch"):
        ScreeningRequest(0, ScreeningRule(), (PARENTS,), np.array([0]))


def test_a_snapshot_is_used_only_at_its_own_budget():
    evaluation = Evaluation(0.9, 0.5, 0.8, screen_accuracy=0.7, screen_auroc=0.6, screen_epochs=60)
    assert evaluation.screening_minimisation(60) == pytest.approx((0.3, 0.5, 0.4))
    # another budget (a cache filled by another experiment) or no snapshot: the final objectives stand in
    assert evaluation.screening_minimisation(30) == pytest.approx((0.1, 0.5, 0.2))
    assert Evaluation(0.9, 0.5, 0.8).screening_minimisation(60) == pytest.approx((0.1, 0.5, 0.2))


def test_min_gain_lets_go_of_masks_that_add_too_little_hypervolume():
    from evoprune.shared.pareto import hypervolume

    front = PARENTS[:2]
    gap_filler = np.array([0.15, 0.45, 0.15])  # non-dominated, between the two front points
    gain = hypervolume(np.vstack([front, gap_filler])) - hypervolume(front)
    relative = gain / hypervolume(front)
    assert 0 < relative < 0.1
    assert not ScreeningRule(min_gain=relative * 0.99).hopeless(gap_filler, PARENTS)
    assert ScreeningRule(min_gain=relative * 1.01).hopeless(gap_filler, PARENTS)
    # the gain is measured against the front only: a dominated parent changes nothing
    assert ScreeningRule(min_gain=relative * 1.01).hopeless(gap_filler, front)
