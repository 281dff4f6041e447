"""Percentile windows of a front's accuracies: which members an ensemble takes (imports no TensorFlow)."""

from __future__ import annotations

import numpy as np

# The paper's windows: (50, 60), (55, 65), ..., (85, 95) percentiles of the front's accuracies.
WINDOW_FIRST_LOWER = 50
WINDOW_LAST_LOWER = 85
WINDOW_STEP = 5
WINDOW_WIDTH = 10


def percentile_windows(
    first_lower: int = WINDOW_FIRST_LOWER,
    last_lower: int = WINDOW_LAST_LOWER,
    step: int = WINDOW_STEP,
    width: int = WINDOW_WIDTH,
) -> list[tuple[int, int]]:
    """The (lower, upper) percentile windows, in increasing order.

    Args:
        first_lower: lower percentile of the first window.
        last_lower: lower percentile of the last window.
        step: distance between successive lower percentiles.
        width: upper minus lower percentile.

    Returns:
        [(first_lower, first_lower + width), ..., (last_lower, last_lower + width)].

    """
    if not 0 <= first_lower <= last_lower or last_lower + width > 100 or step <= 0 or width <= 0:
        raise ValueError("percentile windows must lie within 0..100 with positive step and width")
    return [(lower, lower + width) for lower in range(first_lower, last_lower + 1, step)]


def window_members(accuracies: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """The members whose accuracy lies in a percentile window, both ends included.

    Percentiles are numpy's default (linear interpolation) over all the given accuracies; a window can
    be empty when the accuracies jump over it.

    Args:
        accuracies: (P,) accuracy of every front member.
        window: (lower, upper) percentiles.

    Returns:
        Indices of the members in the window, in increasing order.

    """
    values = np.asarray(accuracies, dtype=np.float64)
    low, high = np.percentile(values, window)
    return np.flatnonzero((values >= low) & (values <= high))


def window_bounds(accuracies: np.ndarray, window: tuple[float, float]) -> tuple[float, float]:
    """The accuracies at a window's two percentiles (what `window_members` compares with)."""
    low, high = np.percentile(np.asarray(accuracies, dtype=np.float64), window)
    return float(low), float(high)
