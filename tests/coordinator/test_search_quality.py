"""NSGA-II against random search on the real demo: the statistical acceptance test (slow tier)."""

from __future__ import annotations

import numpy as np
import pytest

from evoprune.benchmarks.bench_search_quality import ThreadedBackend, compare
from evoprune.shared.config import demo_config_path, load_config, parse_config
from evoprune.shared.screening import ScreeningRequest, ScreeningRule

SMALL = {
    "name": "small-threads",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"layers": [32]},
    "training": {"max_epochs": 4, "learning_rate": 0.01},
}
FIELDS = (
    "accuracy",
    "active_fraction",
    "auroc",
    "test_accuracy",
    "test_auroc",
    "epochs",
    "fidelity",
    "screen_accuracy",
    "screen_auroc",
    "screen_epochs",
)


@pytest.mark.slow  # 22 s; it guards the slow test's own helper, so it runs in the same tier
def test_threaded_backend_gives_the_single_evaluators_results_in_order():
    """Chunks trained on two threads come back in mask order, bitwise as one evaluator gives them."""
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator
    from evoprune.workers.features.assemble import load_feature_set

    config = parse_config(SMALL)
    features = load_feature_set(config, progress=False)
    length = config.head.mask_length(features.input_dim)
    masks = np.random.default_rng(5).random((7, length)) < np.linspace(0.1, 0.9, 7)[:, None]
    # a perfect parent at 50 % active judges masks 2-6 (the denser ones stop at the budget); 0 and 1 train on
    assignment = np.array([-1, -1, 0, 0, 0, 0, 0])
    request = ScreeningRequest(2, ScreeningRule(), (np.array([[0.0, 0.5, 0.0]]),), assignment)
    single = BatchedEvaluator(features, config)
    backend = ThreadedBackend(features, config, threads=2)
    try:
        for screening in (None, request):
            expected = single.evaluate(masks, screening)
            got = backend.evaluate(masks, screening)
            assert [[getattr(e, f) for f in FIELDS] for e in got] == [
                [getattr(e, f) for f in FIELDS] for e in expected
            ]
            if screening is not None:
                assert any(e.fidelity < 1 for e in got) and any(e.fidelity == 1 for e in got[2:])
    finally:
        backend.close()


@pytest.mark.slow
def test_nsga2_beats_random_search_on_the_demo_over_twenty_seeds(tmp_path):
    # twenty seeds × 200 evaluations per method, the demo's own protocol: about 7,800 trainings of ~0.18 CPU-s
    # each, shared out to one evaluator thread per core: 14 min on 2 shared cores (33 min one thread at a
    # time). Fitness is deterministic, so the verdict is reproducible; measured: 0.857 vs 0.842, p = 0.0006
    # (BENCHMARKS.md).
    # Ten seeds sat on the edge (p = 0.044, difference 0.00995) once the evaluator's arithmetic moved by a
    # last bit (EVALUATOR_REVISION 3), as five had before: twenty leave both thresholds a margin.
    result = compare(load_config(demo_config_path()), seeds=20, out_dir=tmp_path)
    assert result["mann_whitney_p"] < 0.05, result
    assert result["mean_difference"] > 0.01, result
