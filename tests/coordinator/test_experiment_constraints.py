"""A constrained experiment end to end: fronts and summary mark feasibility; resumes equal straight runs."""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from evoprune.coordinator.constraints import Constraints
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.directory import ExperimentError, load_resumable
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.config import parse_config
from evoprune.shared.masks import decode_mask
from tests.coordinator.fakes import FakeProblem
from tests.coordinator.test_experiment import REPO, comparable, kill_then_resume, uninterrupted

# 64 fake inputs → Dense(16) → 2 classes: a mask of k inputs keeps 16·k + 34 weights; ≤ 20 inputs fit 354
SEARCH = {
    "population_size": 10,
    "max_evaluations": 60,
    "runs": 2,
    "seed": 7,
    "constraints": {"max_head_parameters": 354, "min_accuracy": 0.5},
}
HEAD = {"layers": [16]}


def constrained_experiment(out: Path, **search) -> Experiment:
    config = parse_config({"name": "constrained", "head": HEAD, "search": {**SEARCH, **search}})
    constraints = Constraints.of(config, 64, 2)
    return Experiment(
        config, out, "fake-features", 64, InProcessEvaluator(FakeProblem()), constraints=constraints
    )


def test_fronts_and_summary_mark_feasibility_and_a_cancelled_run_resumes_to_the_same(tmp_path):
    straight = constrained_experiment(tmp_path / "straight")
    straight.start()
    summary = straight.run()

    rows = read_evaluations(tmp_path / "straight")
    feasible = {
        row["mask"]: int(decode_mask(row["mask"], 64).sum()) * 16 + 34 <= 354 and row["accuracy"] >= 0.5
        for row in rows
    }
    assert 0 < sum(feasible.values()) < len(feasible)
    front = pq.read_table(tmp_path / "straight" / "front.parquet").to_pylist()
    assert all(row["feasible"] == feasible[row["mask"]] for row in front)
    # the search spends its budget on the feasible region: the final populations' fronts are feasible
    assert all(row["feasible"] for row in front if row["kind"] == "population")
    data = json.loads((tmp_path / "straight" / "summary.json").read_text())["aggregate"]
    assert data["feasible"] == sum(feasible[row["mask"]] for row in rows)
    assert data["best_feasible_accuracy"] == max(row["accuracy"] for row in rows if feasible[row["mask"]])
    assert summary.aggregate.best_feasible_accuracy == data["best_feasible_accuracy"]

    out = tmp_path / "cancelled"
    cancelled = constrained_experiment(out)
    cancelled.start()
    assert cancelled.run(should_stop=lambda: cancelled.evaluations_done >= 40).status == "cancelled"
    config, checkpoint = load_resumable(out)
    resumed = Experiment(
        config,
        out,
        "fake-features",
        64,
        InProcessEvaluator(FakeProblem()),
        constraints=Constraints.of(config, 64, 2),
    )
    resumed.restore(checkpoint)
    assert resumed.run().status == "succeeded"
    assert comparable(read_evaluations(out)) == comparable(rows)
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(tmp_path / "straight" / "front.parquet"))


def test_a_head_budget_without_the_layout_is_refused_and_no_constraints_no_column(tmp_path):
    config = parse_config({"head": HEAD, "search": SEARCH})
    with pytest.raises(ExperimentError, match="head budget"):
        Experiment(config, tmp_path / "x", "fake-features", 64, InProcessEvaluator(FakeProblem()))
    plain = parse_config({"search": {**SEARCH, "constraints": {}, "max_evaluations": 20, "runs": 1}})
    experiment = Experiment(plain, tmp_path / "plain", "fake-features", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    experiment.run()
    assert "feasible" not in pq.read_table(tmp_path / "plain" / "front.parquet").column_names
    assert "feasible" not in json.loads((tmp_path / "plain" / "summary.json").read_text())["aggregate"]


@pytest.mark.slow
def test_a_killed_constrained_run_resumes_to_the_uninterrupted_result(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"name": "fake", "head": HEAD, "search": {**SEARCH, "max_evaluations": 80}})
    )
    expected = uninterrupted(tmp_path, config)
    log = tmp_path / "trained.log"
    environment = {**os.environ, "FAKE_DELAY_S": "0.05", "FAKE_LOG": str(log), "PYTHONPATH": str(REPO)}
    out = kill_then_resume(tmp_path, config, environment, kill_at_rows=70)
    assert comparable(read_evaluations(out)) == comparable(expected)
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(tmp_path / "straight" / "front.parquet"))
    trained = log.read_text().split()
    assert len(trained) == len(set(trained)), "a mask was trained twice"
    assert np.any(pq.read_table(out / "front.parquet").column("feasible").to_numpy())
