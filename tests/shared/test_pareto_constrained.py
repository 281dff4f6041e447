"""Constrained domination (Deb's rule) in shared.pareto, checked against a brute-force peel."""

import numpy as np
import pytest

from evoprune.shared.pareto import (
    constrained_dominates,
    constrained_non_dominated_sort,
    constrained_ranks,
    fronts_in_discovery_order,
    non_dominated_sort,
)


def peeled_fronts(points: np.ndarray, violation: np.ndarray) -> list[set[int]]:
    """Fronts by definition: repeatedly take the points no remaining point constrained-dominates."""
    remaining = set(range(len(points)))
    fronts = []
    while remaining:
        front = {
            q
            for q in remaining
            if not any(
                constrained_dominates(points[p], violation[p], points[q], violation[q]) for p in remaining
            )
        }
        fronts.append(front)
        remaining -= front
    return fronts


@pytest.mark.parametrize("seed", range(6))
def test_constrained_fronts_equal_the_definition(seed):
    rng = np.random.default_rng(seed)
    # coarse values: ties in objectives and in violation levels, as masks of equal bit counts give
    points = rng.integers(0, 5, size=(40, 3)).astype(np.float64) / 4
    violation = np.where(rng.random(40) < 0.5, 0.0, rng.integers(1, 4, size=40) / 8)
    expected = peeled_fronts(points, violation)
    assert [set(front.tolist()) for front in constrained_non_dominated_sort(points, violation)] == expected
    assert [set(front.tolist()) for front in fronts_in_discovery_order(points, violation)] == expected
    rank = constrained_ranks(points, violation)
    for index, front in enumerate(expected):
        assert set(np.flatnonzero(rank == index).tolist()) == front


def test_deb_rule_feasible_first_then_less_violation():
    points = np.array([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1]])
    violation = np.array([0.3, 0.0, 0.1, 0.1])
    fronts = [front.tolist() for front in constrained_non_dominated_sort(points, violation)]
    # the worst objectives but the only feasible point leads; of equal violation, dominance decides
    assert fronts == [[1], [3], [2], [0]]
    assert constrained_dominates(points[1], 0.0, points[0], 0.3)
    assert not constrained_dominates(points[0], 0.3, points[1], 0.0)


def test_no_violation_is_plain_non_dominated_sorting():
    points = np.random.default_rng(3).random((30, 3))
    plain = non_dominated_sort(points)
    constrained = constrained_non_dominated_sort(points, np.zeros(30))
    assert [front.tolist() for front in constrained] == [front.tolist() for front in plain]
    assert [front.tolist() for front in fronts_in_discovery_order(points, np.zeros(30))] == [
        front.tolist() for front in fronts_in_discovery_order(points)
    ]


@pytest.mark.parametrize(
    ("violation", "message"),
    [([0.0, -0.1], ">= 0"), ([0.0, np.nan], "finite"), ([0.0], "1 violations for 2 points")],
)
def test_bad_violations_are_refused(violation, message):
    with pytest.raises(ValueError, match=message):
        constrained_non_dominated_sort(np.zeros((2, 3)), violation)
