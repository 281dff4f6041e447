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


def reference_shares(total: int, bins: int) -> list[int]:
    """The reference's even split: total // bins each, the remainder one each to the first bins.

    No bin's capacity is consulted, so a shortfall is never handed to another bin (main.py and
    utility.read_dataset_ood of the reference split the OoD total over datasets, then over classes, so).

    Args:
        total: items to split.
        bins: how many bins.

    Returns:
        Items per bin, in order.

    """
    if total < 0 or bins < 0:
        raise ValueError("total and bins must be >= 0")
    if bins == 0:
        return []
    shares = [total // bins] * bins
    for index in range(total % bins):
        shares[index] += 1
    return shares


def first_n_indices(labels: np.ndarray, wanted: int) -> np.ndarray:
    """The reference's choice of OoD images from one source (fitness._process_ood_data).

    The source's samples are taken class by class in label order, each class in the source's own order
    (a stable sort, so a source whose classes are already contiguous, as the reference's class folders
    are, keeps its order). `wanted` is split over the classes by `reference_shares`. The first class gives
    its first min(share, size) samples; every later class always gives its first sample, even when its
    share is 0, and then up to its share; a class that runs short gives what it has and its shortfall is
    not made up elsewhere. So a source can give a few more or fewer than `wanted`.

    Args:
        labels: the class label of every sample in the source's pool, in the source's order.
        wanted: the source's share of the OoD total.

    Returns:
        The chosen indices into the pool, sorted.

    """
    order = np.argsort(labels, kind="stable")
    _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    shares = reference_shares(wanted, len(starts))
    picks = []
    for position, (start, size, share) in enumerate(zip(starts, sizes, shares, strict=True)):
        count = min(share, size) if position == 0 else max(1, min(share, size))
        picks.append(order[start : start + count])
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, np.int64)


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
        sampling: "random" draws each class's share at random, and a source or class that runs short hands
            its shortfall to the others (`allocate`); "first_n" is the reference's rule with its quirks
            (`reference_shares` over sources, then `first_n_indices` within each).

    Returns:
        For each source, the sorted indices into its pool that were chosen. If the pools hold fewer than
        `total` samples together, all of them are chosen (random sampling) and a warning is logged.

    """
    if sampling not in OOD_SAMPLINGS:
        raise ValueError(f"unknown OoD sampling {sampling!r}; known: {', '.join(OOD_SAMPLINGS)}")
    pool_size = sum(len(labels) for labels in labels_per_source)
    if total > pool_size:
        logger.warning("OoD pool holds %d samples but %d are needed: using all of them", pool_size, total)
    if sampling == "first_n":
        shares = reference_shares(total, len(labels_per_source))
        return [
            first_n_indices(np.asarray(labels), share)
            for labels, share in zip(labels_per_source, shares, strict=True)
        ]
    per_source = allocate(total, [len(labels) for labels in labels_per_source])
    rng = seeded_generator(seed)
    chosen = []
    for labels, wanted in zip(labels_per_source, per_source, strict=True):
        classes, sizes = np.unique(labels, return_counts=True)
        per_class = allocate(wanted, sizes.tolist())
        picks = [
            rng.choice(np.flatnonzero(labels == label), size=count, replace=False)
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
        (n, D) float32 features, grouped by source in the given order: n = min(total, pool size) under
        random sampling; under first_n, what the reference's rule gives (see `first_n_indices`).

    """
    if not features_per_source:
        raise ValueError("no OoD sources to sample from")
    chosen = choose_ood_indices(labels_per_source, total, seed, sampling)
    parts = [features[indices] for features, indices in zip(features_per_source, chosen, strict=True)]
    return np.concatenate(parts).astype(np.float32, copy=False)
