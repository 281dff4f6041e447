"""Pareto maths in minimisation space: dominance, non-dominated sorting, crowding, exact 3-D hypervolume."""

from __future__ import annotations

import bisect

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
    """Split points into successive non-dominated fronts (Deb's fast non-dominated sort).

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
    """Mark the non-dominated points (the first front).

    Args:
        points: (n, m) objective vectors, minimised.

    Returns:
        (n,) bools, true for points no other point dominates; duplicates of a front point are all kept.

    """
    array = _as_points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(~dominance_matrix(array).any(axis=0), dtype=bool)


def ranks(points: np.ndarray) -> np.ndarray:
    """Compute the front index of every point (0 = non-dominated).

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


class _Staircase:
    """The 2-D non-dominated points seen so far (x ascending, y descending) and the area they dominate."""

    def __init__(self, reference: tuple[float, float]) -> None:
        self.reference = reference
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.area = 0.0

    def insert(self, x: float, y: float) -> None:
        xs, ys = self.xs, self.ys
        left = bisect.bisect_left(xs, x)
        right_of_equal = bisect.bisect_right(xs, x)
        if right_of_equal > 0 and ys[right_of_equal - 1] <= y:
            return  # dominated (or equalled) by a point with x' <= x
        # the points the new one dominates form a run starting at `left`
        stop = left
        while stop < len(xs) and ys[stop] >= y:
            stop += 1
        # strips between consecutive x's gain the height between the old cover and y
        cover = ys[left - 1] if left > 0 else self.reference[1]
        edges = [x, *xs[left:stop], xs[stop] if stop < len(xs) else self.reference[0]]
        heights = [cover, *ys[left:stop]]
        for index, height in enumerate(heights):
            self.area += (edges[index + 1] - edges[index]) * (height - y)
        xs[left:stop] = [x]
        ys[left:stop] = [y]


def hypervolume(points: np.ndarray, reference: tuple[float, float, float] = REFERENCE_POINT) -> float:
    """Exact hypervolume dominated by 3-D points, bounded by a reference point.

    Sweeps the third objective upwards, keeping the 2-D staircase of the points seen so far and its area;
    between consecutive z values the dominated region is a prism on that area. O(n log n) plus the
    staircase updates: a front of a thousand points takes milliseconds.

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
    array = array[np.argsort(array[:, 2], kind="stable")]
    staircase = _Staircase((float(bound[0]), float(bound[1])))
    z_values = [*array[:, 2].tolist(), float(bound[2])]
    volume = 0.0
    for index, (x, y) in enumerate(array[:, :2].tolist()):
        staircase.insert(x, y)
        volume += staircase.area * (z_values[index + 1] - z_values[index])
    return volume


class ParetoArchive:
    """The non-dominated set of everything added so far, one entry per distinct label (e.g. a mask)."""

    def __init__(self) -> None:
        self.points = np.zeros((0, 3), dtype=np.float64)
        self.labels: list[str] = []
        self._hypervolume: float | None = 0.0

    def add(self, points: np.ndarray, labels: list[str]) -> bool:
        """Add candidates and keep only the non-dominated ones.

        Args:
            points: (n, 3) minimisation objectives.
            labels: one label per point; a label already in the archive is ignored.

        Returns:
            Whether the archive changed.

        """
        candidates = _as_points(points).reshape(-1, 3)
        known = set(self.labels)
        changed = False
        for point, label in zip(candidates, labels, strict=True):
            if label in known:
                continue
            known.add(label)
            # one candidate against the archive: O(n), where re-sorting the whole set would be O(n²)
            no_better = np.all(self.points <= point, axis=1)
            if np.any(no_better & np.any(self.points < point, axis=1)):
                continue
            survivors = ~(np.all(point <= self.points, axis=1) & np.any(point < self.points, axis=1))
            self.points = np.concatenate([self.points[survivors], point[None, :]])
            self.labels = [kept for kept, alive in zip(self.labels, survivors, strict=True) if alive] + [
                label
            ]
            changed = True
        if changed:
            self._hypervolume = None
        return changed

    @property
    def hypervolume(self) -> float:
        """Hypervolume of the archive w.r.t. (1, 1, 1), cached until the archive changes."""
        if self._hypervolume is None:
            self._hypervolume = hypervolume(self.points)
        return self._hypervolume
