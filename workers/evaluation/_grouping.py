"""Which masks train together in one computation, and how much arithmetic a call does.

Every model is padded to the widest member of its group, so grouping decides the wasted arithmetic; it
never decides a result (the chunked reductions of _head_core make each model's sums independent of its
padding and company).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from evoprune.workers.evaluation.head_layout import padded_width

# Accelerator defaults. A group is padded to its widest member; past this fraction of padding FLOPs a new
# group starts. 0.25 bounds the waste of a uniform-density first round to 25 % at about 4 groups, where
# one group padded to the widest mask does ~2x the necessary work.
ACCELERATOR_PADDING_WASTE = 0.25
# Below this many masks a group is never split: a small call is bound by per-step latency, not arithmetic,
# so splitting it would multiply the latency (the 20-mask steady rounds of BENCHMARKS.md).
ACCELERATOR_MIN_GROUP = 32


@dataclass(frozen=True)
class GroupPolicy:
    """How masks are split into groups."""

    max_size: int  # models per computation at most
    padding_waste: float | None = None  # None: fixed-size groups of masks sorted by width (the CPU policy)
    min_size: int = 1  # a group is not closed for waste before it has this many members


def step_flops_per_sample(widths: tuple[int, ...], num_classes: int) -> int:
    """FLOPs one model spends on one sample in one training step (forward, weight and input gradients).

    Args:
        widths: the model's (padded) widths per position: input, hidden...
        num_classes: output width.

    Returns:
        2·in·out per layer for the forward matmul and for the kernel gradient, plus the same for the
        gradient propagated to every layer's input except the first (the features need none).
    """
    sizes = [*widths, num_classes]
    products = [fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes)]
    return 2 * (2 * sum(products) + sum(products[1:]))


def padded_widths(kept_widths: list[tuple[int, ...]], pruned: tuple[bool, ...]) -> tuple[int, ...]:
    """The widths a group with these members' kept widths is padded to."""
    return tuple(
        padded_width(max(widths[position] for widths in kept_widths), pruned[position])
        for position in range(len(pruned))
    )


def group_masks(
    kept_widths: list[tuple[int, ...]], pruned: tuple[bool, ...], num_classes: int, policy: GroupPolicy
) -> list[list[int]]:
    """Splits masks into groups of similar widths.

    Args:
        kept_widths: per mask, its kept width at every position.
        pruned: per position, whether widths are compacted (and padded to chunk multiples).
        num_classes: output width (part of the FLOP cost).
        policy: sizes and the waste bound.

    Returns:
        Lists of mask positions; together they cover every mask once.
    """
    by_width = sorted(range(len(kept_widths)), key=lambda mask: kept_widths[mask])
    if policy.padding_waste is None:
        return [
            by_width[start : start + policy.max_size] for start in range(0, len(by_width), policy.max_size)
        ]

    def own_cost(mask: int) -> int:
        return step_flops_per_sample(padded_widths([kept_widths[mask]], pruned), num_classes)

    groups: list[list[int]] = []
    current: list[int] = []
    necessary = 0
    # widest first: each group's first member sets its padding, narrower ones join while the waste allows
    for mask in reversed(by_width):
        candidate = [*current, mask]
        cost = len(candidate) * step_flops_per_sample(
            padded_widths([kept_widths[m] for m in candidate], pruned), num_classes
        )
        within = cost <= (1.0 + policy.padding_waste) * (necessary + own_cost(mask))
        if current and (len(current) >= policy.max_size or (len(current) >= policy.min_size and not within)):
            groups.append(current)
            candidate, necessary = [mask], 0
        current = candidate
        necessary += own_cost(mask)
    if current:
        groups.append(current)
    return [sorted(group, key=lambda mask: kept_widths[mask]) for group in reversed(groups)]


@dataclass
class CallFlops:
    """The arithmetic of one `evaluate` call's training, for achieved-throughput figures.

    executed: FLOPs the device ran (padded widths, padded last batch, every epoch any member of a group
        trained; models that stopped early but rode along are counted as the device computes them).
    necessary: FLOPs of the same training with every model at its own unpadded widths and epochs.
    groups: computations the masks were split into, per fold.
    """

    executed: int = 0
    necessary: int = 0
    groups: int = 0

    def add_group(
        self,
        kept_widths: list[tuple[int, ...]],
        epochs: list[int],
        pruned: tuple[bool, ...],
        num_classes: int,
        rows_per_epoch: int,
        real_samples: int,
    ) -> None:
        """Adds one group's training.

        Args:
            kept_widths: the members' own widths.
            epochs: the epochs each member trained.
            pruned: per position, whether widths are compacted.
            num_classes: output width.
            rows_per_epoch: samples computed per epoch, padding of the last batch included.
            real_samples: training samples per epoch.
        """
        group_widths = padded_widths(kept_widths, pruned)
        per_sample = step_flops_per_sample(group_widths, num_classes)
        self.executed += len(kept_widths) * per_sample * rows_per_epoch * max(epochs)
        for widths, trained in zip(kept_widths, epochs, strict=True):
            self.necessary += step_flops_per_sample(widths, num_classes) * real_samples * trained
        self.groups += 1
