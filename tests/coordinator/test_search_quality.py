"""NSGA-II against random search on the real demo: the statistical acceptance test (slow tier)."""

from __future__ import annotations

import pytest

from evoprune.benchmarks.bench_search_quality import compare
from evoprune.shared.config import demo_config_path, load_config


@pytest.mark.slow
def test_nsga2_beats_random_search_on_the_demo_over_ten_seeds(tmp_path):
    # ten seeds × 200 evaluations per method, the demo's own protocol: ~5 min on 2 cores. Fitness is
    # deterministic, so the verdict is reproducible; measured: 0.854 vs 0.842, p = 0.027 (BENCHMARKS.md).
    # Five seeds gave p = 0.11 once later evaluator changes had moved three of NSGA-II's runs.
    result = compare(load_config(demo_config_path()), seeds=10, out_dir=tmp_path)
    assert result["mann_whitney_p"] < 0.05, result
    assert result["mean_difference"] > 0.01, result
