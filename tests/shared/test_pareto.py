import itertools

import numpy as np
import pytest

from evoprune.shared.pareto import (
    crowding_distance,
    dominates,
    fronts_in_discovery_order,
    hypervolume,
    non_dominated_sort,
    pareto_mask,
    ranks,
)


def brute_force_fronts(points):
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


def inclusion_exclusion_hypervolume(points, reference=(1.0, 1.0, 1.0)):
    reference = np.asarray(reference)
    points = [p for p in np.asarray(points, dtype=float) if np.all(p < reference)]
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(np.array(subset), axis=0)
            total += (-1) ** (size + 1) * float(np.prod(reference - corner))
    return total


def test_dominates_is_strict():
    assert dominates(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.3, 0.3]))
    assert not dominates(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.3]))
    assert not dominates(np.array([0.1, 0.4, 0.3]), np.array([0.2, 0.2, 0.3]))


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_sort_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # a coarse grid makes ties and duplicates common
    points = rng.integers(0, 5, size=(40, 3)).astype(float)
    fronts = non_dominated_sort(points)
    assert [sorted(f.tolist()) for f in fronts] == brute_force_fronts(points)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(40))
    assert np.array_equal(pareto_mask(points), np.isin(np.arange(40), fronts[0]))
    expected_ranks = np.zeros(40, dtype=int)
    for rank, front in enumerate(brute_force_fronts(points)):
        expected_ranks[front] = rank
    assert np.array_equal(ranks(points), expected_ranks)


def test_pareto_mask_keeps_duplicates_and_matches_a_pairwise_table_on_a_larger_set():
    rng = np.random.default_rng(7)
    points = np.round(rng.random((600, 3)), 1)
    points[1] = points[0]  # an exact duplicate: both or neither are on the front
    pairwise = np.all(points[:, None] <= points[None], axis=2) & np.any(
        points[:, None] < points[None], axis=2
    )
    expected = ~pairwise.any(axis=0)
    assert np.array_equal(pareto_mask(points), expected)
    assert pareto_mask(points)[0] == pareto_mask(points)[1]
    assert ranks(np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.6, 0.6, 0.6]])).tolist() == [0, 0, 1]


def test_empty_inputs():
    assert non_dominated_sort(np.zeros((0, 3))) == []
    assert hypervolume(np.zeros((0, 3))) == 0.0
    assert pareto_mask(np.zeros((0, 3))).shape == (0,)


def test_crowding_distance_boundaries_and_interior():
    points = np.array([[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    distance = crowding_distance(points)
    assert np.isinf(distance[0]) and np.isinf(distance[3])
    assert distance[1] == pytest.approx(0.5 + 0.5)
    assert distance[2] == pytest.approx(0.75 + 0.75)
    assert np.all(np.isinf(crowding_distance(points[:2])))


@pytest.mark.parametrize("seed", range(5))
def test_fronts_in_discovery_order_are_the_same_fronts(seed):
    points = np.round(np.random.default_rng(seed).random((40, 3)), 1)
    found = fronts_in_discovery_order(points)
    assert [sorted(front.tolist()) for front in found] == [f.tolist() for f in non_dominated_sort(points)]
    assert found[0].tolist() == sorted(found[0].tolist())  # front 0 in index order, later ones as found


def test_chained_sorts_break_ties_by_the_previous_objective():
    # b and c tie on objective 1; sorted from objective 0's order c comes first, so c is the boundary
    points = np.array([[0.0, 1.0], [0.2, 0.0], [0.1, 0.0], [0.3, 0.5]])
    assert np.isinf(crowding_distance(points)[1]) and not np.isinf(crowding_distance(points)[2])
    chained = crowding_distance(points, chained_sorts=True)
    assert np.isinf(chained[2]) and not np.isinf(chained[1])


def test_hypervolume_of_simple_shapes():
    assert hypervolume(np.array([[0.0, 0.0, 0.0]])) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(0.125)
    # a point on or beyond the reference bound adds nothing
    assert hypervolume(np.array([[1.0, 0.0, 0.0], [0.2, 1.5, 0.0]])) == 0.0
    # dominated and duplicate points add nothing
    assert hypervolume(np.array([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6], [0.5, 0.5, 0.5]])) == pytest.approx(0.125)


@pytest.mark.parametrize("seed", range(20))
def test_hypervolume_equals_inclusion_exclusion(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 9))
    points = rng.random((count, 3)) * 1.1  # some points fall outside the reference box
    if seed % 2:
        points = np.round(points, 1)  # ties in every coordinate
    assert hypervolume(points) == pytest.approx(inclusion_exclusion_hypervolume(points), abs=1e-12)


def test_hypervolume_agrees_with_monte_carlo_on_a_larger_front():
    rng = np.random.default_rng(42)
    directions = np.abs(rng.normal(size=(60, 3)))
    points = 1.0 - directions / np.linalg.norm(directions, axis=1, keepdims=True) * 0.9
    samples = rng.random((400_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for point in points:
        covered |= np.all(samples >= point, axis=1)
    estimate = covered.mean()
    standard_error = np.sqrt(estimate * (1 - estimate) / len(samples))
    assert abs(hypervolume(points) - estimate) < 4 * standard_error


def test_hypervolume_custom_reference():
    assert hypervolume(np.array([[1.0, 1.0, 1.0]]), reference=(2.0, 3.0, 4.0)) == pytest.approx(1 * 2 * 3)


def test_archive_keeps_the_non_dominated_distinct_labels():
    from evoprune.shared.pareto import ParetoArchive

    archive = ParetoArchive()
    assert archive.add(np.array([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6]]), ["a", "b"])
    assert archive.labels == ["a"]
    assert not archive.add(np.array([[0.5, 0.5, 0.5]]), ["a"])
    assert not archive.add(np.array([[0.7, 0.7, 0.7]]), ["c"])
    assert archive.add(np.array([[0.5, 0.5, 0.5], [0.1, 0.9, 0.5]]), ["d", "e"])
    assert archive.labels == ["a", "d", "e"]
    assert archive.hypervolume == pytest.approx(hypervolume(archive.points))


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_counts_grid_cells_exactly_on_larger_sets(seed):
    # on a grid of step 1/10, the dominated volume is the number of dominated cells / 1000
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 10, size=(150, 3)) / 10
    cells = np.stack(np.meshgrid(*[np.arange(10) / 10] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    dominated = np.zeros(len(cells), dtype=bool)
    for point in points:
        dominated |= np.all(cells >= point - 1e-12, axis=1)
    assert hypervolume(points) == pytest.approx(dominated.sum() / 1000, abs=1e-9)


def test_archive_equals_the_front_of_everything_added():
    from evoprune.shared.pareto import ParetoArchive

    rng = np.random.default_rng(3)
    points = np.round(rng.random((300, 3)), 1)
    archive = ParetoArchive()
    for start in range(0, 300, 7):
        archive.add(points[start : start + 7], [str(i) for i in range(start, min(start + 7, 300))])
    expected = {str(i) for i in np.flatnonzero(pareto_mask(points))}
    assert set(archive.labels) == expected
    assert archive.hypervolume == pytest.approx(hypervolume(points))
