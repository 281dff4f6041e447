"""Violations of search.constraints, and the pruned head's size counted as `evoprune export` counts it."""

import numpy as np
import pytest

from evoprune.coordinator.constraints import Constraints, ConstraintsError, HeadBudgetLayout
from evoprune.shared.config import ConstraintsConfig, parse_config


def config(head, **constraints):
    return parse_config({"head": head, "search": {"constraints": constraints}})


def test_features_mode_head_size_follows_the_kept_inputs():
    # 10 inputs → Dense(16, no bias) → Dense(3) + bias: a mask of k inputs keeps k·16 + 16·3 + 3 weights
    constraints = Constraints.of(config({"layers": [16]}, max_head_parameters=100), 10, 3)
    assert constraints is not None and constraints.head is not None
    assert constraints.head.full.parameters == 10 * 16 + 16 * 3 + 3
    for ones in (0, 1, 4, 10):
        mask = np.arange(10) < ones
        cost = constraints.head.cost(mask)
        assert cost.parameters == ones * 16 + 16 * 3 + 3
        assert cost.flops == 2 * (ones * 16 + 16 * 3) + 3


def test_neurons_mode_with_two_masked_layers_counts_both_widths():
    # 6 inputs → Dense(4, bias) → Dense(5, bias) → Dense(2): the mask keeps units of both hidden layers
    head = {"mode": "neurons", "layers": [4, 5], "masked": [0, 1], "hidden_bias": True}
    constraints = Constraints.of(config(head, max_head_flops=10), 6, 2)
    assert constraints is not None and constraints.head is not None
    mask = np.array([1, 0, 1, 0, 1, 1, 0, 0, 0], dtype=bool)  # 2 of 4, then 2 of 5
    cost = constraints.head.cost(mask)
    assert cost.widths == (6, 2, 2, 2)
    assert cost.parameters == 6 * 2 + 2 * 2 + 2 * 2 + (2 + 2) + 2


def test_violations_are_normalised_and_summed():
    constraints = Constraints.of(
        config(
            {"layers": [16]}, max_active_fraction=0.5, min_accuracy=0.9, min_auroc=0.6, max_head_parameters=99
        ),
        10,
        3,
    )
    assert constraints is not None
    assert constraints.names == ("max_active_fraction", "min_accuracy", "min_auroc", "max_head_parameters")
    masks = np.array([np.arange(10) < 3, np.arange(10) < 8])
    # minimisation objectives: (1 - accuracy, active fraction, 1 - auroc)
    objectives = np.array([[0.05, 0.3, 0.2], [0.3, 0.8, 0.5]])
    violations = constraints.violations(masks, objectives)
    full = 10 * 16 + 16 * 3 + 3
    assert violations[0] == pytest.approx([0.0, 0.0, 0.0, 0.0])
    assert violations[1] == pytest.approx([0.3, 0.2, 0.1, (8 * 16 + 51 - 99) / full])
    assert constraints.feasible(masks, objectives).tolist() == [True, False]
    assert constraints.total_violation(masks, objectives)[1] == pytest.approx(violations[1].sum())


def test_no_constraints_no_checker_and_a_head_budget_needs_the_layout():
    assert Constraints.of(parse_config({}), 10, 3) is None
    with pytest.raises(ConstraintsError, match="head budget"):
        Constraints(ConstraintsConfig(max_head_flops=5))
    # objective bounds alone need no layout
    assert Constraints(ConstraintsConfig(min_accuracy=0.5)).head is None


def test_the_count_equals_the_exported_heads_parameters():
    """The budget counts the weights of the physically smaller head `evoprune export` builds."""
    from evoprune.workers.evaluation.head_layout import active_indices, head_shape
    from evoprune.workers.export.model import head_model

    experiment = config({"mode": "features", "layers": [8, 6], "masked": [0, 1]}, max_head_parameters=50)
    shape = head_shape(experiment.head, 12, 4)
    layout = HeadBudgetLayout.of(shape)
    mask = np.random.default_rng(0).random(12 + 8) < 0.5
    model = head_model(shape, active_indices(shape, mask), None)
    assert layout.cost(mask).parameters == model.count_params()
