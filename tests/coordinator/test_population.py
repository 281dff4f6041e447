"""The live population fronts read from a checkpoint: before the first step, mid-run and at the end."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.population import population_fronts
from evoprune.shared.config import parse_config
from evoprune.shared.masks import encode_mask
from evoprune.shared.pareto import hypervolume, pareto_mask
from tests.coordinator.fakes import FakeProblem

CONFIG = parse_config({"name": "live", "search": {"population_size": 8, "max_evaluations": 40, "runs": 2}})


def test_nothing_before_the_first_checkpoint(tmp_path):
    assert population_fronts(tmp_path, CONFIG.search) == {}


def test_mid_run_fronts_are_the_current_populations_non_dominated_members(tmp_path):
    experiment = Experiment(CONFIG, tmp_path, "fake", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    experiment.run(should_stop=lambda: experiment.evaluations_done >= 30)
    fronts = population_fronts(tmp_path, CONFIG.search)
    union = {}
    for run in range(2):
        masks, objectives = experiment._runs[run].search.population()
        distinct = {encode_mask(mask): point for mask, point in zip(masks, objectives, strict=True)}
        points = np.array(list(distinct.values()))
        kept = pareto_mask(points)
        expected = [mask for mask, keep in zip(distinct, kept, strict=True) if keep]
        assert sorted(fronts[run].masks) == sorted(expected)
        assert fronts[run].hypervolume == pytest.approx(hypervolume(points[kept]), abs=1e-15)
        union.update((mask, distinct[mask]) for mask in expected)
    aggregate = np.array(list(union.values()))
    assert fronts[-1].hypervolume == pytest.approx(
        hypervolume(aggregate[pareto_mask(aggregate)]), abs=1e-15
    )


def test_at_the_end_they_are_front_parquets_population_rows(tmp_path):
    experiment = Experiment(CONFIG, tmp_path, "fake", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    experiment.run()
    fronts = population_fronts(tmp_path, CONFIG.search)
    written = pq.read_table(tmp_path / "front.parquet").to_pylist()
    for run in (-1, 0, 1):
        rows = {r["mask"]: r for r in written if r["run"] == run and r["kind"] == "population"}
        assert sorted(fronts[run].masks) == sorted(rows)
        for mask, point in zip(fronts[run].masks, fronts[run].points, strict=True):
            # the checkpoint holds minimisation values: 1 - (1 - x) may differ from x in the last bit
            assert point == pytest.approx(
                [rows[mask][k] for k in ("accuracy", "active_fraction", "auroc")], abs=1e-15
            )
