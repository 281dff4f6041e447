"""OoD sampling: as many samples as the evaluation split, spread evenly over sources and their classes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def seeded_generator(seed: int | Sequence[int]) -> np.random.Generator:
    """Make a generator from one seed or a sequence of them; negative seeds are allowed.

    Args:
        seed: an int or a sequence of ints; the sequence form gives independent streams per position.

    Returns:
        A numpy generator.

    """
    parts = [seed] if isinstance(seed, int) else list(seed)
    # SeedSequence takes non-negative entropy only; wrapping modulo 2**64 keeps distinct int64 seeds distinct.
    return np.random.default_rng([int(part) % (1 << 64) for part in parts])


def allocate(total: int, capacities: Sequence[int]) -> list[int]:
    """Split `total` evenly over bins of limited capacity, refilling the others when one runs short.

    Water-filling: every bin that still has room gets an equal share of what is left; a bin that cannot
    take its share keeps what it has, and the rest is shared again among the bins with room. What cannot
    be shared evenly at the end goes one each to the earliest bins with room, so the result is
    deterministic and no bin with room ends more than one below any other.

    Args:
        total: how many items to place.
        capacities: the most each bin can take.

    Returns:
        Items per bin, in the order of `capacities`; the sum is min(total, sum(capacities)).

    """
    if total < 0 or any(capacity < 0 for capacity in capacities):
        raise ValueError("total and capacities must be >= 0")
    counts = [0] * len(capacities)
    remaining = min(total, sum(capacities))
    while remaining > 0:
        open_bins = [index for index, capacity in enumerate(capacities) if counts[index] < capacity]
        share = remaining // len(open_bins)
        if share == 0:
            for index in open_bins[:remaining]:
                counts[index] += 1
            break
        for index in open_bins:
            granted = min(share, capacities[index] - counts[index])
            counts[index] += granted
            remaining -= granted
    return counts


OOD_SAMPLINGS = ("random", "first_n")


def choose_ood_indices(
    labels_per_source: Sequence[np.ndarray],
    total: int,
    seed: int | Sequence[int],
    sampling: str = "random",
) -> list[np.ndarray]:
    """Pick which OoD samples to use: `total` split evenly over sources, then over each source's classes.

    Args:
        labels_per_source: for each OoD source, the class label of every sample in its pool.
        total: the number of OoD samples wanted (the evaluation split's size).
        seed: seeds the choice of samples within each class (random sampling only).
        sampling: "random" draws each class's share at random; "first_n" takes each class's first
            samples in the source's own order, as the reference did with its curated OoD folders.

    Returns:
        For each source, the sorted indices into its pool that were chosen. If the pools hold fewer than
        `total` samples together, all of them are chosen and a warning is logged.

    """
    if sampling not in OOD_SAMPLINGS:
        raise ValueError(f"unknown OoD sampling {sampling!r}; known: {', '.join(OOD_SAMPLINGS)}")
    pool_size = sum(len(labels) for labels in labels_per_source)
    if total > pool_size:
        logger.warning("OoD pool holds %d samples but %d are needed: using all of them", pool_size, total)
    per_source = allocate(total, [len(labels) for labels in labels_per_source])
    rng = seeded_generator(seed)
    chosen = []
    for labels, wanted in zip(labels_per_source, per_source, strict=True):
        classes, sizes = np.unique(labels, return_counts=True)
        per_class = allocate(wanted, sizes.tolist())
        picks = [
            np.flatnonzero(labels == label)[:count]
            if sampling == "first_n"
            else rng.choice(np.flatnonzero(labels == label), size=count, replace=False)
            for label, count in zip(classes, per_class, strict=True)
        ]
        chosen.append(np.sort(np.concatenate(picks)) if picks else np.empty(0, np.int64))
    return chosen


def sample_ood(
    features_per_source: Sequence[np.ndarray],
    labels_per_source: Sequence[np.ndarray],
    total: int,
    seed: int | Sequence[int],
    sampling: str = "random",
) -> np.ndarray:
    """Draw the OoD features for one evaluation split.

    Args:
        features_per_source: each source's (N_s, D) feature pool.
        labels_per_source: each source's (N_s,) class labels, used only to spread the draw over classes.
        total: samples wanted.
        seed: seeds the draw.
        sampling: "random" or "first_n" (see `choose_ood_indices`).

    Returns:
        (min(total, pool size), D) float32 features, grouped by source in the given order.

    """
    if not features_per_source:
        raise ValueError("no OoD sources to sample from")
    chosen = choose_ood_indices(labels_per_source, total, seed, sampling)
    parts = [features[indices] for features, indices in zip(features_per_source, chosen, strict=True)]
    return np.concatenate(parts).astype(np.float32, copy=False)
