"""NSGA-II against random search on the real demo: the statistical acceptance test (slow tier)."""

from __future__ import annotations

import pytest

from evoprune.benchmarks.bench_search_quality import compare
from evoprune.shared.config import demo_config_path, load_config


@pytest.mark.slow
def test_nsga2_beats_random_search_on_the_demo_over_twenty_seeds(tmp_path):
    # twenty seeds × 200 evaluations per method, the demo's own protocol: ~10 min on 2 idle cores. Fitness
    # is deterministic, so the verdict is reproducible; measured: 0.857 vs 0.842, p = 0.0006 (BENCHMARKS.md).
    # Ten seeds sat on the edge (p = 0.044, difference 0.00995) once the evaluator's arithmetic moved by a
    # last bit (EVALUATOR_REVISION 3), as five had before: twenty leave both thresholds a margin.
    result = compare(load_config(demo_config_path()), seeds=20, out_dir=tmp_path)
    assert result["mann_whitney_p"] < 0.05, result
    assert result["mean_difference"] > 0.01, result
