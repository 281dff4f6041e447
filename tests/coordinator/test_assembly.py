"""The one assembly of an experiment: its settings, its fitness cache and its rules."""

import os

import pytest

from evoprune.coordinator.assembly import RunSettings, mask_length_problem, open_fitness_cache
from evoprune.coordinator.resilient_cache import ResilientFitnessCache
from evoprune.shared.config import NO_OOD_MESSAGE, parse_config
from evoprune.shared.objectives import Evaluation


def test_without_a_shared_cache_an_experiment_keeps_its_own_ledger_only():
    assert open_fitness_cache(RunSettings()) is None


def test_the_local_shared_cache_rides_out_outages(tmp_path):
    cache = open_fitness_cache(RunSettings(local_fitness_cache=str(tmp_path / "fitness.jsonl")))
    assert isinstance(cache, ResilientFitnessCache)
    cache.put_many({"k": Evaluation(0.9, 0.5, 0.8)})
    cache.close()
    again = open_fitness_cache(RunSettings(local_fitness_cache=str(tmp_path / "fitness.jsonl")))
    assert again is not None and again.get_many(["k"]) == {"k": Evaluation(0.9, 0.5, 0.8)}
    again.close()


@pytest.mark.redis
def test_a_redis_url_selects_the_shared_redis_cache_under_the_prefix():
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    cache = open_fitness_cache(RunSettings(redis_url=url, redis_prefix="evoprune-test"))
    try:
        assert cache is not None and cache.describe().startswith("redis")
    finally:
        assert cache is not None
        cache.close()


def test_the_rules_live_on_the_config():
    config = parse_config({"head": {"mode": "neurons", "layers": [64]}})
    assert config.runnable_problems() == [NO_OOD_MESSAGE]
    with_ood = parse_config({"ood": [{"source": "sklearn:sample_images"}]})
    assert with_ood.runnable_problems() == []
    assert mask_length_problem(config, None, input_dim=10) is None
    assert mask_length_problem(config, 64, input_dim=None) is None
    problem = mask_length_problem(config, 63, input_dim=None)
    assert (
        problem is not None and problem.startswith("head.layers:") and "EVOPRUNE_MAX_MASK_LENGTH" in problem
    )
    features = parse_config({"head": {"layers": [8]}})
    assert mask_length_problem(features, 100, input_dim=None) is None  # the inputs are not known yet
    assert "101 bits" in (mask_length_problem(features, 100, input_dim=101) or "")
