import numpy as np
import pytest

from evoprune.shared.config import HeadConfig
from evoprune.workers.analysis.importance import (
    bit_frequencies,
    bit_label,
    bit_meanings,
    solutions_using,
    top_bits,
)
from evoprune.workers.evaluation.head_layout import head_shape


def test_frequencies_are_a_direct_count():
    rng = np.random.default_rng(0)
    masks = rng.random((17, 40)) < np.linspace(0.05, 0.9, 40)
    counts, frequencies = bit_frequencies(masks)
    for bit in range(40):
        count = sum(1 for mask in masks if mask[bit])
        assert counts[bit] == count
        assert frequencies[bit] == count / 17
        assert solutions_using(masks, bit).tolist() == [i for i, mask in enumerate(masks) if mask[bit]]


def test_top_bits_by_count_then_index_and_never_unused():
    counts = np.array([3, 5, 5, 0, 1, 5, 0])
    assert top_bits(counts, 4).tolist() == [1, 2, 5, 0]
    assert top_bits(counts, 10).tolist() == [1, 2, 5, 0, 4]


def test_empty_front_is_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        bit_frequencies(np.zeros((0, 5), dtype=bool))


def test_meanings_follow_the_head_layout():
    features = head_shape(HeadConfig(), 6, 3)
    assert [(m.bit, m.position, m.unit) for m in bit_meanings(features)] == [(b, 0, b) for b in range(6)]
    assert bit_label(bit_meanings(features)[4]) == "feature 4"
    neurons = head_shape(HeadConfig(mode="neurons", layers=(5,)), 6, 3)
    assert [(m.position, m.unit) for m in bit_meanings(neurons)] == [(1, u) for u in range(5)]
    assert bit_label(bit_meanings(neurons)[2]) == "h1 unit 2"
    both = head_shape(HeadConfig(mode="features", layers=(4, 3), masked=(0, 1)), 6, 3)
    meanings = bit_meanings(both)
    assert len(meanings) == both.mask_length == 10
    assert [(m.segment, m.position, m.unit) for m in meanings[5:8]] == [(0, 0, 5), (1, 1, 0), (1, 1, 1)]
