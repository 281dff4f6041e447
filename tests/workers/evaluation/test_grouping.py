"""Grouping masks by width: bounded padding, small rounds kept whole, results independent of the groups."""

from __future__ import annotations

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation._grouping import (
    GroupPolicy,
    group_masks,
    padded_widths,
    step_flops_per_sample,
)
from evoprune.workers.evaluation.evaluator import BatchedEvaluator
from tests.workers.conftest import density_masks, wide_digits

PRUNED = (True, False)  # features mode: input widths compacted, hidden width fixed


def _first_round_widths(count: int, seed: int = 0) -> list[tuple[int, ...]]:
    # the reference's initial population: round(p·2048) inputs on, p ~ U(0, 1)
    generator = np.random.default_rng(seed)
    return [(round(generator.uniform() * 2048), 512) for _ in range(count)]


def test_step_flops_count_forward_weight_and_input_gradients() -> None:
    # 2·(forward + kernel gradient) for both layers, input gradient only for the second
    assert step_flops_per_sample((100, 10), 3) == 2 * (2 * (100 * 10 + 10 * 3) + 10 * 3)


def test_waste_bound_holds_and_every_mask_is_placed_once() -> None:
    widths = _first_round_widths(300)
    policy = GroupPolicy(max_size=1024, padding_waste=0.25, min_size=32)
    groups = group_masks(widths, PRUNED, 3, policy)
    assert sorted(m for group in groups for m in group) == list(range(300))
    executed = 0
    for group in groups:
        members = [widths[m] for m in group]
        cost = len(group) * step_flops_per_sample(padded_widths(members, PRUNED), 3)
        necessary = sum(step_flops_per_sample(padded_widths([w], PRUNED), 3) for w in members)
        # a group grows past min_size only while its padding stays within the bound
        assert len(group) <= 32 or cost <= 1.25 * necessary
        assert len(group) >= 32 or group is groups[0]  # only the narrowest remainder may be smaller
        executed += cost
    one_group = 300 * step_flops_per_sample(padded_widths(widths, PRUNED), 3)
    assert executed < 0.75 * one_group  # one group padded to the widest mask: 1.75x the necessary work
    assert 1 < len(groups) <= 10


def test_a_small_round_stays_one_call() -> None:
    policy = GroupPolicy(max_size=1024, padding_waste=0.25, min_size=32)
    assert len(group_masks(_first_round_widths(20), PRUNED, 3, policy)) == 1


def test_cpu_policy_is_fixed_size_groups_sorted_by_width() -> None:
    widths = [(w, 512) for w in (900, 10, 500, 300, 50)]
    assert group_masks(widths, PRUNED, 3, GroupPolicy(max_size=2)) == [[1, 4], [3, 2], [0]]


def test_width_groups_give_the_same_results_as_one_group() -> None:
    features = wide_digits(300)  # 300 inputs: masks pad to one, two or three 128-wide chunks
    config = ExperimentConfig.model_validate({"head": {"layers": [32]}, "training": {"max_epochs": 4}})
    masks = density_masks(6, 300, seed=3)
    one_group = BatchedEvaluator(features, config, group_size=6)
    by_width = BatchedEvaluator(features, config, group_size=6, padding_waste=0.0)
    together = one_group.evaluate(masks)
    grouped = by_width.evaluate(masks)
    assert by_width.last_flops.groups > one_group.last_flops.groups == 1
    assert by_width.last_flops.executed < one_group.last_flops.executed
    assert [(r.accuracy, r.auroc, r.epochs) for r in grouped] == [
        (r.accuracy, r.auroc, r.epochs) for r in together
    ]
