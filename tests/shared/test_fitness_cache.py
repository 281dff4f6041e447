import os
import uuid

import numpy as np
import pytest

from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.shared.masks import fitness_key
from evoprune.shared.objectives import Evaluation

EVALUATION = Evaluation(accuracy=0.9, active_fraction=0.25, auroc=0.7, epochs=12.0, seconds=3.5, worker="w1")
OTHER = Evaluation(accuracy=0.8, active_fraction=0.5, auroc=0.6, test_accuracy=0.75, test_auroc=0.65)


def key_of(bits):
    return fitness_key("features", "protocol", np.array(bits, dtype=bool))


def test_local_cache_round_trip_and_persistence(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = LocalFitnessCache(path)
    cache.put_many({key_of([1, 0, 1]): EVALUATION, key_of([0, 1, 1]): OTHER})
    assert cache.get_many([key_of([1, 0, 1]), key_of([1, 1, 1])]) == {key_of([1, 0, 1]): EVALUATION}
    reopened = LocalFitnessCache(path)
    assert len(reopened) == 2
    assert reopened.get_many([key_of([0, 1, 1])]) == {key_of([0, 1, 1]): OTHER}


def test_local_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    LocalFitnessCache(path).put_many({key_of([1, 1, 0]): EVALUATION})
    with path.open("a") as handle:
        handle.write('{"key": "abc", "evaluation": {"accur')
    reopened = LocalFitnessCache(path)
    assert len(reopened) == 1
    reopened.put_many({key_of([0, 0, 1]): OTHER})
    assert len(LocalFitnessCache(path)) == 2


def test_first_entry_wins(tmp_path):
    cache = LocalFitnessCache(tmp_path / "c.jsonl")
    cache.put_many({"k": EVALUATION})
    cache.put_many({"k": OTHER})
    assert LocalFitnessCache(tmp_path / "c.jsonl").get_many(["k"])["k"] == EVALUATION


def test_keys_differ_by_protocol_and_features():
    mask = np.array([1, 0, 1], dtype=bool)
    keys = {fitness_key("a", "p", mask), fitness_key("b", "p", mask), fitness_key("a", "q", mask)}
    assert len(keys) == 3


@pytest.mark.redis
def test_redis_cache_round_trip():
    from evoprune.shared.fitness_cache_redis import RedisFitnessCache

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"evoprune-test:{uuid.uuid4().hex}:"
    cache = RedisFitnessCache(url, prefix=prefix)
    try:
        assert cache.get_many([key_of([1, 0, 1])]) == {}
        cache.put_many({key_of([1, 0, 1]): EVALUATION, key_of([0, 1, 1]): OTHER})
        cache.put_many({key_of([1, 0, 1]): OTHER})  # the first writer wins
        second = RedisFitnessCache(url, prefix=prefix)
        found = second.get_many([key_of([1, 0, 1]), key_of([0, 1, 1]), key_of([1, 1, 1])])
        assert found == {key_of([1, 0, 1]): EVALUATION, key_of([0, 1, 1]): OTHER}
        second.close()
    finally:
        assert cache.delete_all() == 2
        cache.close()
