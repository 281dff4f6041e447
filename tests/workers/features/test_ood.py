"""OoD sampling: even split over sources and classes, water-filling, seeded choice."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from evoprune.workers.features._ood import allocate, choose_ood_indices, sample_ood


@pytest.mark.parametrize(
    ("total", "capacities", "expected"),
    [
        (10, [100, 100], [5, 5]),
        (10, [100, 100, 100], [4, 3, 3]),
        (10, [2, 100, 100], [2, 4, 4]),
        (11, [2, 3, 100], [2, 3, 6]),
        (12, [5, 0, 5, 5], [4, 0, 4, 4]),
        (10, [2, 3], [2, 3]),
        (0, [4, 4], [0, 0]),
        (3, [], []),
    ],
)
def test_allocate_examples(total, capacities, expected):
    assert allocate(total, capacities) == expected


def test_allocate_is_water_filling_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(500):
        capacities = rng.integers(0, 30, size=rng.integers(1, 7)).tolist()
        total = int(rng.integers(0, 120))
        counts = allocate(total, capacities)
        assert sum(counts) == min(total, sum(capacities))
        assert all(0 <= count <= capacity for count, capacity in zip(counts, capacities, strict=True))
        # A bin below capacity never has fewer than any other bin minus one: nobody short-changed.
        open_counts = [count for count, capacity in zip(counts, capacities, strict=True) if count < capacity]
        if open_counts:
            assert max(counts) - min(open_counts) <= 1


def test_allocate_rejects_negative_numbers():
    with pytest.raises(ValueError, match=">= 0"):
        allocate(-1, [3])


def _labels(*class_sizes: int) -> np.ndarray:
    return np.concatenate([np.full(size, label) for label, size in enumerate(class_sizes)])


def test_choice_spreads_evenly_over_sources_and_classes():
    sources = [_labels(50, 50), _labels(40, 40, 40)]
    chosen = choose_ood_indices(sources, 60, seed=0)
    assert [len(indices) for indices in chosen] == [30, 30]
    assert np.bincount(sources[0][chosen[0]]).tolist() == [15, 15]
    assert np.bincount(sources[1][chosen[1]]).tolist() == [10, 10, 10]
    for indices in chosen:
        assert len(np.unique(indices)) == len(indices)
        assert np.all(np.diff(indices) > 0)


def test_short_classes_and_sources_hand_their_share_to_the_others():
    sources = [_labels(3, 100), _labels(5)]
    chosen = choose_ood_indices(sources, 40, seed=1)
    # source 1 can give only 5 of its 20, so source 0 gives 35: 3 from its small class, 32 from the other.
    assert [len(indices) for indices in chosen] == [35, 5]
    assert np.bincount(sources[0][chosen[0]]).tolist() == [3, 32]


def test_choice_is_seeded():
    sources = [_labels(30, 30), _labels(25)]
    first = choose_ood_indices(sources, 20, seed=[7, 4, 0])
    again = choose_ood_indices(sources, 20, seed=[7, 4, 0])
    other = choose_ood_indices(sources, 20, seed=[8, 4, 0])
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_small_pool_is_used_whole_with_a_warning(caplog):
    sources = [_labels(3, 2), _labels(4)]
    with caplog.at_level(logging.WARNING, logger="evoprune.workers.features._ood"):
        chosen = choose_ood_indices(sources, 50, seed=0)
    assert [indices.tolist() for indices in chosen] == [[0, 1, 2, 3, 4], [0, 1, 2, 3]]
    assert "using all of them" in caplog.text


def test_sample_ood_gathers_features_by_source():
    pools: list[np.ndarray] = [
        np.arange(20, dtype=np.float64).reshape(10, 2),
        -np.arange(12, dtype=np.float32).reshape(6, 2),
    ]
    labels = [_labels(5, 5), _labels(6)]
    drawn = sample_ood(pools, labels, 8, seed=3)
    assert drawn.shape == (8, 2)
    assert drawn.dtype == np.float32
    assert np.all(drawn[:4] >= 0)
    assert np.all(drawn[4:] <= 0)


def test_sample_ood_needs_a_source():
    with pytest.raises(ValueError, match="no OoD sources"):
        sample_ood([], [], 5, seed=0)


def test_negative_seeds_are_accepted_and_distinct():
    sources = [_labels(30, 30)]
    negative = choose_ood_indices(sources, 10, seed=[-1, 4, 0])
    positive = choose_ood_indices(sources, 10, seed=[1, 4, 0])
    assert len(negative[0]) == 10
    assert not np.array_equal(negative[0], positive[0])


def test_first_n_takes_each_class_first_samples_in_the_source_order():
    # classes interleaved, so "first of each class" differs from "first rows of the pool"
    sources = [np.array([0, 1, 0, 1, 0, 1, 0, 1]), _labels(3, 6)]
    chosen = choose_ood_indices(sources, 8, seed=0, sampling="first_n")
    # 4 per source; source 0: two of each class, its first two; source 1: two of class 0, two of class 1
    assert chosen[0].tolist() == [0, 1, 2, 3]
    assert chosen[1].tolist() == [0, 1, 3, 4]
    # no randomness: any seed gives the same set, and a larger total only adds samples
    assert all(
        np.array_equal(a, b)
        for a, b in zip(chosen, choose_ood_indices(sources, 8, seed=99, sampling="first_n"), strict=True)
    )
    larger = choose_ood_indices(sources, 12, seed=0, sampling="first_n")
    assert all(set(a) <= set(b) for a, b in zip(chosen, larger, strict=True))


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="unknown OoD sampling"):
        choose_ood_indices([_labels(3)], 2, seed=0, sampling="last_n")


def _reference_walk(labels: np.ndarray, total: int, sources: int, source_index: int) -> list[int]:
    """The reference's OoD choice, transcribed from its described behaviour (main.py splits the total over
    the OoD datasets, utility.read_dataset_ood over a dataset's classes, both `total // n` with the
    remainder to the first; fitness._process_ood_data then walks the class-ordered samples)."""
    share = total // sources + (1 if source_index < total % sources else 0)
    classes = len(np.unique(labels))
    left = [share // classes + (1 if c < share % classes else 0) for c in range(classes)]
    chosen, current, reference = [], 0, labels[0]
    for index, label in enumerate(labels):
        if label == reference and left[current] > 0:
            chosen.append(index)
            left[current] -= 1
        elif label != reference:  # a new class: its first sample is always taken
            current, reference = current + 1, label
            chosen.append(index)
            left[current] -= 1
    return chosen


def test_first_n_equals_the_reference_walk_on_random_class_sizes_and_shares():
    rng = np.random.default_rng(20)
    differences = 0
    for _ in range(400):
        sources = [
            _labels(*rng.integers(1, 40, size=rng.integers(1, 30)).tolist())
            for _ in range(rng.integers(1, 6))
        ]
        total = int(rng.integers(0, 400))
        chosen = choose_ood_indices(sources, total, seed=0, sampling="first_n")
        for index, (labels, indices) in enumerate(zip(sources, chosen, strict=True)):
            differences += indices.tolist() != _reference_walk(labels, total, len(sources), index)
    assert differences == 0


def test_first_n_keeps_the_reference_quirks():
    # a class whose share rounds to 0 still gives its first sample, after the first class
    many_classes = _labels(*([5] * 27))
    (chosen,) = choose_ood_indices([many_classes], 16, seed=0, sampling="first_n")
    assert len(chosen) == 27
    assert np.bincount(many_classes[chosen]).tolist() == [1] * 27
    # a class that runs short gives what it has; nobody makes up the difference
    (short,) = choose_ood_indices([_labels(2, 50)], 20, seed=0, sampling="first_n")
    assert np.bincount(_labels(2, 50)[short]).tolist() == [2, 10]
    # a source that runs short is not made up by the others either
    chosen = choose_ood_indices([_labels(3), _labels(50)], 20, seed=0, sampling="first_n")
    assert [len(indices) for indices in chosen] == [3, 10]


# (classes, test-split size of the first fold) of the paper's datasets: SRSMAS 409 and LEAVES 594 images
# in 5 folds, RPS 372, PAINTING 856, PLANTS 236, CATARACT 601 // 5 (its 121-image test split)
PAPER_DATASETS = {
    "SRSMAS": (14, 82),
    "LEAVES": (4, 119),
    "PAINTING": (5, 856),
    "RPS": (3, 372),
    "PLANTS": (27, 236),
    "CATARACT": (4, 121),
}


@pytest.mark.parametrize("target", PAPER_DATASETS)
def test_first_n_on_the_paper_datasets_class_counts(target):
    others = [name for name in PAPER_DATASETS if name != target]
    # ample images: 200 per class
    sources = [_labels(*([200] * PAPER_DATASETS[name][0])) for name in others]
    total = PAPER_DATASETS[target][1]
    chosen = choose_ood_indices(sources, total, seed=0, sampling="first_n")
    for index, (name, labels, indices) in enumerate(zip(others, sources, chosen, strict=True)):
        assert indices.tolist() == _reference_walk(labels, total, len(sources), index), name
        share = total // 5 + (index < total % 5)
        assert len(indices) == max(share, PAPER_DATASETS[name][0])
    if target in ("SRSMAS", "LEAVES"):
        # the figures: PLANTS gives 27 images as an OoD source for SRSMAS and LEAVES (16 and 23
        # under the water-filling allocator)
        assert len(chosen[others.index("PLANTS")]) == 27
