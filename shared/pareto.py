"""Pareto maths in minimisation space: dominance, non-dominated sorting, crowding, exact 3-D hypervolume."""

from __future__ import annotations

import numpy as np

REFERENCE_POINT = (1.0, 1.0, 1.0)


def _as_points(points: np.ndarray | list) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 3 if array.ndim < 2 else array.shape[-1])
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D (n, objectives) array, got shape {array.shape}")
    return array


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `a` Pareto-dominates `b` when every objective is minimised.

    Args:
        a: one objective vector.
        b: another of the same length.

    Returns:
        True when `a` is no worse everywhere and strictly better somewhere.
    """
    return bool(np.all(a <= b) and np.any(a < b))


def dominance_matrix(points: np.ndarray) -> np.ndarray:
    """All pairwise dominance relations at once.

    Args:
        points: (n, m) objective vectors, minimised.

    Returns:
        (n, n) bools, entry [i, j] true when point i dominates point j.
    """
    array = _as_points(points)
    no_worse = np.all(array[:, None, :] <= array[None, :, :], axis=2)
    better = np.any(array[:, None, :] < array[None, :, :], axis=2)
    return no_worse & better


def non_dominated_sort(points: np.ndarray) -> list[np.ndarray]:
    """Splits points into successive non-dominated fronts (Deb's fast non-dominated sort).

    Args:
        points: (n, m) objective vectors, minimised.

    Returns:
        A list of index arrays, front 0 first; each front's indices in increasing order.
        Identical points share a front.
    """
    array = _as_points(points)
    count = len(array)
    if count == 0:
        return []
    dominated_by = dominance_matrix(array)
    remaining_dominators = dominated_by.sum(axis=0)
    fronts = []
    current = np.flatnonzero(remaining_dominators == 0)
    assigned = np.zeros(count, dtype=bool)
    while current.size:
        fronts.append(current)
        assigned[current] = True
        remaining_dominators = remaining_dominators - dominated_by[current].sum(axis=0)
        current = np.flatnonzero((remaining_dominators == 0) & ~assigned)
    return fronts


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Marks the non-dominated points (the first front).

    Args:
        points: (n, m) objective vectors, minimised.

    Returns:
        (n,) bools, true for points no other point dominates; duplicates of a front point are all kept.
    """
    array = _as_points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return ~dominance_matrix(array).any(axis=0)


def ranks(points: np.ndarray) -> np.ndarray:
    """The front index of every point (0 = non-dominated).

    Args:
        points: (n, m) objective vectors, minimised.

    Returns:
        (n,) integer ranks.
    """
    result = np.zeros(len(_as_points(points)), dtype=np.int64)
    for rank, front in enumerate(non_dominated_sort(points)):
        result[front] = rank
    return result


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one set of points (usually one front).

    Args:
        points: (n, m) objective vectors.

    Returns:
        (n,) distances; boundary points of every objective get infinity.
    """
    array = _as_points(points)
    count, objectives = array.shape
    distance = np.zeros(count, dtype=np.float64)
    if count <= 2:
        distance[:] = np.inf
        return distance
    for objective in range(objectives):
        # a stable sort keeps ties in input order, so distances do not depend on the sort implementation
        order = np.argsort(array[:, objective], kind="stable")
        values = array[order, objective]
        distance[order[0]] = distance[order[-1]] = np.inf
        span = values[-1] - values[0]
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def _hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by 2-D points (all strictly inside the reference box)."""
    if len(points) == 0:
        return 0.0
    order = np.lexsort((points[:, 1], points[:, 0]))
    xs = points[order, 0]
    lowest_y = np.minimum.accumulate(points[order, 1])
    widths = np.diff(np.append(xs, reference[0]))
    return float(np.sum(widths * (reference[1] - lowest_y)))


def hypervolume(points: np.ndarray, reference: tuple[float, float, float] = REFERENCE_POINT) -> float:
    """Exact hypervolume dominated by 3-D points, bounded by a reference point.

    Sweeps the third objective: between consecutive z values the dominated region is a prism whose base is
    the 2-D hypervolume of the points seen so far. O(n² log n), plenty for fronts of a few thousand points.

    Args:
        points: (n, 3) objective vectors, minimised.
        reference: the bounding point; points not strictly better in every objective add nothing.

    Returns:
        The dominated volume; with the default reference and objectives in [0, 1] it lies in [0, 1].
    """
    array = _as_points(points)
    if len(array) == 0:
        return 0.0
    if array.shape[1] != 3:
        raise ValueError(f"hypervolume needs 3 objectives, got {array.shape[1]}")
    bound = np.asarray(reference, dtype=np.float64)
    array = array[np.all(array < bound, axis=1)]
    if len(array) == 0:
        return 0.0
    array = np.unique(array[pareto_mask(array)], axis=0)
    array = array[np.argsort(array[:, 2], kind="stable")]
    z_values = np.append(array[:, 2], bound[2])
    volume = 0.0
    for index in range(len(array)):
        height = z_values[index + 1] - z_values[index]
        if height > 0:
            volume += height * _hypervolume_2d(array[: index + 1, :2], (bound[0], bound[1]))
    return volume


class ParetoArchive:
    """The non-dominated set of everything added so far, one entry per distinct label (e.g. a mask)."""

    def __init__(self) -> None:
        self.points = np.zeros((0, 3), dtype=np.float64)
        self.labels: list[str] = []
        self._hypervolume: float | None = 0.0

    def add(self, points: np.ndarray, labels: list[str]) -> bool:
        """Adds candidates and keeps only the non-dominated ones.

        Args:
            points: (n, 3) minimisation objectives.
            labels: one label per point; a label already in the archive is ignored.

        Returns:
            Whether the archive changed.
        """
        candidates = _as_points(points).reshape(-1, 3)
        known = set(self.labels)
        fresh = []
        for index, label in enumerate(labels):
            if label not in known:
                known.add(label)
                fresh.append(index)
        if not fresh:
            return False
        merged_points = np.concatenate([self.points, candidates[fresh]])
        merged_labels = self.labels + [labels[i] for i in fresh]
        keep = pareto_mask(merged_points)
        new_labels = [label for label, kept in zip(merged_labels, keep, strict=True) if kept]
        if new_labels == self.labels:
            return False
        self.points = merged_points[keep]
        self.labels = new_labels
        self._hypervolume = None
        return True

    @property
    def hypervolume(self) -> float:
        """Hypervolume of the archive w.r.t. (1, 1, 1), cached until the archive changes."""
        if self._hypervolume is None:
            self._hypervolume = hypervolume(self.points)
        return self._hypervolume
