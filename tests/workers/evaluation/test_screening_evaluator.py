"""Screening in the evaluator: paused-and-continued training is bitwise the uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest, ScreeningRule
from evoprune.workers.evaluation.evaluator import BatchedEvaluator
from evoprune.workers.features.feature_set import FeatureSet
from tests.workers.conftest import MAX_EPOCHS, density_masks, digits_feature_set, stopping_config

ROOT = Path(__file__).resolve().parents[3]
BUDGET = 6  # epochs: before the early stops of `stopping_config` (16, 21) and well short of MAX_EPOCHS
HEADS = {
    "features": {"layers": [32]},
    "two-layers-both-bias": {"layers": [24, 16], "masked": [0, 1], "hidden_bias": True},
}


def full(evaluation: Evaluation) -> tuple:
    return (evaluation.accuracy, evaluation.auroc, evaluation.epochs, evaluation.test_accuracy)


def request(count: int, reference: np.ndarray, assignment: list[int] | None = None) -> ScreeningRequest:
    chosen = np.zeros(count, dtype=np.int64) if assignment is None else np.array(assignment)
    return ScreeningRequest(BUDGET, ScreeningRule(), (reference,), chosen)


def at_budget(features: FeatureSet, config: ExperimentConfig, masks: np.ndarray, **options: object) -> list:
    """What the protocol gives with max_epochs = BUDGET: the definition of a mask's screened objectives."""
    short = config.model_copy(update={"training": config.training.model_copy(update={"max_epochs": BUDGET})})
    return BatchedEvaluator(features, short, **options).evaluate(masks)  # type: ignore[arg-type]


@pytest.mark.parametrize("epochs_per_call", [1, 4, None])
@pytest.mark.parametrize("restore", ["always", "when_stopped", "never"])
def test_continued_masks_equal_the_unscreened_run_and_screened_ones_the_short_protocol(
    digits_features, restore: str, epochs_per_call: int | None
) -> None:
    config = stopping_config(HEADS["features"], restore)
    evaluator = BatchedEvaluator(digits_features, config, epochs_per_call=epochs_per_call)
    masks = density_masks(6, evaluator.mask_length, seed=5)
    plain = evaluator.evaluate(masks)
    # a perfect mask at 45 % active dominates every denser one: the dense masks stop, the sparse train on
    reference = np.array([[0.0, 0.45, 0.0]])
    screened = evaluator.evaluate(masks, request(len(masks), reference))
    short = at_budget(digits_features, config, masks, epochs_per_call=epochs_per_call)
    stopped = [e.fidelity < 1 for e in screened]
    assert stopped == [e.active_fraction > 0.45 for e in plain]
    assert 0 < sum(stopped) < len(masks)
    for model, (with_screening, without, budget) in enumerate(zip(screened, plain, short, strict=True)):
        # every mask records where it stood at the budget, exactly the short protocol's result
        recorded = (with_screening.screen_accuracy, with_screening.screen_auroc)
        assert recorded == (budget.accuracy, budget.auroc)
        assert with_screening.screen_epochs == BUDGET
        if stopped[model]:
            assert with_screening.fidelity == BUDGET / MAX_EPOCHS
            assert full(with_screening) == full(budget), model
        else:
            assert with_screening.fidelity == 1.0
            assert full(with_screening) == full(without), model


@pytest.mark.parametrize("head", list(HEADS))
def test_two_folds_and_heads_continue_bitwise(head: str) -> None:
    features = digits_feature_set(samples=400, folds=2)
    config = stopping_config(HEADS[head])
    evaluator = BatchedEvaluator(features, config)
    masks = density_masks(5, evaluator.mask_length, seed=7)
    plain = evaluator.evaluate(masks)
    # the longest-training mask is judged against a reference nothing can beat, the others are not judged
    judged = int(np.argmax([e.epochs for e in plain]))
    assert plain[judged].epochs > BUDGET
    assignment = [0 if model == judged else -1 for model in range(len(masks))]
    screened = evaluator.evaluate(masks, request(len(masks), np.zeros((1, 3)), assignment))
    assert [e.fidelity < 1 for e in screened] == [model == judged for model in range(len(masks))]
    for model, (with_screening, without) in enumerate(zip(screened, plain, strict=True)):
        if model != judged:
            assert full(with_screening) == full(without), model
    short = at_budget(features, config, masks[judged : judged + 1])
    assert full(screened[judged]) == full(short[0])


def test_a_mask_that_stops_before_the_budget_is_final_and_never_screened(digits_features) -> None:
    config = stopping_config(HEADS["features"])
    evaluator = BatchedEvaluator(digits_features, config)
    masks = density_masks(6, evaluator.mask_length, seed=5)
    plain = evaluator.evaluate(masks)
    # a budget between the first early stop and the end: that mask is final when the others are judged
    budget = int(min(e.epochs for e in plain)) + 1
    assert budget < MAX_EPOCHS
    everything_beaten = ScreeningRequest(budget, ScreeningRule(), (np.zeros((1, 3)),), np.zeros(6, dtype=int))
    screened = evaluator.evaluate(masks, everything_beaten)
    for with_screening, without in zip(screened, plain, strict=True):
        if without.epochs < budget:
            assert with_screening.fidelity == 1.0 and with_screening.screen_accuracy is None
            assert full(with_screening) == full(without)
        else:
            assert with_screening.fidelity == budget / MAX_EPOCHS
            assert with_screening.epochs == budget


def test_a_request_of_the_wrong_length_is_refused(digits_features) -> None:
    evaluator = BatchedEvaluator(digits_features, stopping_config(HEADS["features"]))
    masks = density_masks(3, evaluator.mask_length)
    with pytest.raises(ValueError, match="covers 2 of 3 masks"):
        evaluator.evaluate(masks, request(2, np.zeros((1, 3))))


JAX_CASES = "not under_jax and (always or two_folds or stops_before)"


@pytest.mark.slow
@pytest.mark.jax
def test_the_same_holds_under_jax() -> None:
    """This module's checks again under the JAX backend, where stopped models leave by compaction too."""
    pytest.importorskip("jax")
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run(
        # restore "always" at every epochs_per_call, both heads over two folds, the early stopper: the cases
        # whose compactions (shapes) differ; the other restore rules only change which snapshot is kept
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", JAX_CASES],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert " passed" in completed.stdout and "skipped" not in completed.stdout
