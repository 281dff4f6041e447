"""The most important neurons: how often each mask bit is on across a front, and what each bit stands for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoprune.workers.evaluation.head_layout import HeadShape

DEFAULT_TOP = 10


@dataclass(frozen=True)
class BitMeaning:
    """What one mask bit switches: unit `unit` at head position `position` (0 = input features)."""

    bit: int
    segment: int  # which masked layer's segment of the mask holds the bit
    position: int
    unit: int


def bit_frequencies(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count, for each mask bit, the front members that keep it.

    Args:
        masks: (P, L) bools, one row per front member.

    Returns:
        (counts, frequencies): (L,) int64 counts and (L,) float64 shares of the P members.

    Raises:
        ValueError: no masks.

    """
    array = np.asarray(masks, dtype=bool)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"need a non-empty (P, L) array of masks, got shape {array.shape}")
    counts = array.sum(axis=0, dtype=np.int64)
    return counts, counts / array.shape[0]


def top_bits(counts: np.ndarray, count: int = DEFAULT_TOP) -> np.ndarray:
    """The most frequent bits: highest count first, lower bit index first among equals.

    Bits no member keeps are never chosen, so fewer than `count` come back for very sparse fronts.

    Args:
        counts: (L,) per-bit counts from `bit_frequencies`.
        count: how many to return at most.

    Returns:
        Bit indices, most important first.

    """
    counts = np.asarray(counts)
    # lexsort's last key is the primary one: descending count, then ascending index.
    order = np.lexsort((np.arange(len(counts)), -counts))
    return order[counts[order] > 0][:count]


def bit_meanings(shape: HeadShape) -> list[BitMeaning]:
    """Map every mask bit to the feature or hidden unit it keeps.

    Args:
        shape: the head shape (workers.evaluation.head_layout.head_shape).

    Returns:
        One BitMeaning per bit, in mask order.

    """
    meanings = []
    bit = 0
    for segment, (position, length) in enumerate(shape.segments):
        for unit in range(length):
            meanings.append(BitMeaning(bit, segment, position, unit))
            bit += 1
    return meanings


def solutions_using(masks: np.ndarray, bit: int) -> np.ndarray:
    """Indices of the front members whose mask keeps `bit`."""
    return np.flatnonzero(np.asarray(masks, dtype=bool)[:, bit])


def bit_label(meaning: BitMeaning) -> str:
    """A short name for plots and tables: `feature 17` (an input) or `h1 unit 42` (hidden layer 1)."""
    if meaning.position == 0:
        return f"feature {meaning.unit}"
    return f"h{meaning.position} unit {meaning.unit}"
