"""The fitness cache wrapper that rides out outages of the shared cache behind it."""

from evoprune.coordinator.resilient_cache import ResilientFitnessCache
from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.shared.objectives import Evaluation


def test_resilient_cache_misses_while_down_and_sends_later(tmp_path):
    class Switchable(LocalFitnessCache):
        down = False

        def get_many(self, keys):
            if self.down:
                raise ConnectionError("down")
            return super().get_many(keys)

        def put_many(self, entries):
            if self.down:
                raise ConnectionError("down")
            super().put_many(entries)

    inner = Switchable(tmp_path / "c.jsonl")
    cache = ResilientFitnessCache(inner)
    value = Evaluation(accuracy=0.9, active_fraction=0.5, auroc=0.8)
    inner.down = True
    cache.put_many({"a": value})
    assert cache.unsent == 1 and cache.get_many(["a", "b"]) == {"a": value}
    inner.down = False
    assert cache.get_many(["b"]) == {} and cache.unsent == 0
    assert inner.get_many(["a"]) == {"a": value}
