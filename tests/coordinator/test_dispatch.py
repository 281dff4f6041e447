import os
import signal

import numpy as np
import pytest
import ray

from evoprune.coordinator.dispatch import RayEvaluator
from evoprune.coordinator.evaluator_interface import EvaluationError
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.config import parse_config
from evoprune.shared.events import EvaluationFinished, EventBus
from tests.coordinator.fakes import (  # noqa: F401 (ray_session is a fixture)
    FakeProblem,
    FakeWorker,
    FakeWorkerActor,
    SlowFakeWorkerActor,
    fake_feature_set,
    ray_session,
)

# ---- on a real local Ray ----------------------------------------------------------------------------------

SEARCH = {"population_size": 10, "max_evaluations": 50, "runs": 3, "seed": 11}


def run_experiment(tmp_path, name, workers, actor=FakeWorkerActor, search=None, bus=None):
    config = parse_config({"name": "dispatch", "search": {**SEARCH, **(search or {})}})
    evaluator = RayEvaluator(fake_feature_set(), config, workers=workers, actor_class=actor)
    try:
        experiment = Experiment(config, tmp_path / name, "fake-features", 64, evaluator, bus)
        experiment.start()
        experiment.run()
        return read_evaluations(tmp_path / name), evaluator.describe()
    finally:
        evaluator.close()


def comparable(rows):
    return [
        (r["run"], r["step"], r["mask"], r["accuracy"], r["active_fraction"], r["auroc"], r["cached"])
        for r in rows
    ]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_results_do_not_depend_on_the_worker_count(tmp_path):
    one, described = run_experiment(tmp_path, "one", workers=1)
    two, _ = run_experiment(tmp_path, "two", workers=2)
    assert comparable(one) == comparable(two)
    assert len(one) == 150
    # steady state: every round carries both offspring of all three runs in one call
    assert described["masks_per_call"] > 5


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_asynchronous_fronts_do_not_depend_on_the_worker_count(tmp_path):
    import pyarrow.parquet as pq

    search = {"asynchronous": True}
    run_experiment(tmp_path, "one", workers=1, search=search)
    run_experiment(tmp_path, "two", workers=2, actor=SlowFakeWorkerActor, search=search)
    assert pq.read_table(tmp_path / "one" / "front.parquet").equals(
        pq.read_table(tmp_path / "two" / "front.parquet")
    )


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_ten_runs_are_batched_together(tmp_path):
    _, described = run_experiment(tmp_path, "ten", workers=1, search={"runs": 10, "max_evaluations": 30})
    assert described["masks_per_call"] >= 15  # ~20 offspring per call, not 2


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_killed_worker_costs_time_not_results(tmp_path):
    expected, _ = run_experiment(tmp_path, "straight", workers=2)
    config = parse_config({"name": "dispatch", "search": SEARCH})
    evaluator = RayEvaluator(fake_feature_set(), config, workers=2, actor_class=SlowFakeWorkerActor)
    victim = evaluator.worker_infos()[0]["pid"]
    bus = EventBus()
    killed = []

    def kill_midway(event):
        if isinstance(event, EvaluationFinished) and event.run == 2 and event.step == 5 and not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    bus.subscribe(kill_midway)
    try:
        experiment = Experiment(config, tmp_path / "killed", "fake-features", 64, evaluator, bus)
        experiment.start()
        experiment.run()
        assert killed and evaluator.replacements >= 1
        assert victim not in {info["pid"] for info in evaluator.worker_infos()}
    finally:
        evaluator.close()
    assert comparable(read_evaluations(tmp_path / "killed")) == comparable(expected)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_an_evaluator_error_is_not_retried():
    config = parse_config({})
    evaluator = RayEvaluator(fake_feature_set(length=8), config, workers=1, actor_class=FakeWorkerActor)
    try:
        with pytest.raises(EvaluationError, match="evaluator raised"):
            evaluator.evaluate(np.ones((2, 5), dtype=bool))  # wrong width: the fake fails on it
        assert evaluator.evaluate(np.ones((1, 8), dtype=bool))[0].active_fraction == 1.0
    finally:
        evaluator.close()


def test_fake_problem_is_what_the_actor_computes():
    masks = np.random.default_rng(0).random((4, 64)) < 0.5
    assert [e.accuracy for e in FakeProblem().evaluate(masks)] == [
        e.accuracy for e in FakeProblem(length=64).evaluate(masks)
    ]


@pytest.mark.slow
@pytest.mark.ray
def test_real_evoprune_run_is_the_same_with_one_and_two_workers(tmp_path):
    """The installed command, real features and training (digits, 5 epochs), in fresh processes."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "dataset": {"source": "sklearn:digits"},
                "ood": [{"source": "sklearn:sample_images"}],
                "backbone": {"name": "pixels", "weights": None},
                "training": {"max_epochs": 5},
                "search": {"population_size": 10, "max_evaluations": 20, "runs": 2},
            }
        )
    )
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "evoprune.api.cli",
                "run",
                str(config),
                "--workers",
                str(workers),
                "--out",
                str(out),
            ],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
        assert completed.returncode == 0, completed.stderr[-2000:]
        results[workers] = comparable(read_evaluations(out))
    assert results[1] == results[2]


class DiesOnceWhileStarting(FakeWorker):
    """The first of these to prepare dies in prepare(), as a worker killed (or out of memory) while it starts.

    The feature set's key names the marker file, so "the first" holds across the actors' processes.
    """

    def prepare(self) -> dict:
        try:
            open(self._feature_set.key, "x").close()  # type: ignore[attr-defined]
        except FileExistsError:
            return super().prepare()
        os._exit(1)


DiesOnceWhileStartingActor = ray.remote(max_restarts=0, max_task_retries=0)(DiesOnceWhileStarting)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_worker_lost_while_starting_is_replaced(tmp_path):
    # found by the fault matrix (tests/faults): a worker killed before its prepare() returned failed the
    # whole experiment ("the workers could not start") instead of costing a replacement
    marker = tmp_path / "died"
    config = parse_config({"name": "dispatch", "search": SEARCH})
    evaluator = RayEvaluator(
        fake_feature_set(key=str(marker)), config, workers=2, actor_class=DiesOnceWhileStartingActor
    )
    try:
        assert marker.exists() and evaluator.replacements == 1
        assert all("error" not in info for info in evaluator.worker_infos())
        masks = np.random.default_rng(0).random((6, 64)) < 0.5
        expected = FakeProblem(64).evaluate(masks)
        objectives = [(e.accuracy, e.active_fraction, e.auroc) for e in evaluator.evaluate(masks)]
        assert objectives == [(e.accuracy, e.active_fraction, e.auroc) for e in expected]
    finally:
        evaluator.close()
