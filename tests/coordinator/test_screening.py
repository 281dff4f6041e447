"""Screening in the search: screened masks stay out of populations, fronts and shared caches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from evoprune.coordinator.dispatch import RayEvaluator
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.nsga2 import NSGA2, SearchStateError
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.config import ConfigError, SearchConfig, parse_config
from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.shared.masks import encode_mask
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest, ScreeningRule
from tests.coordinator.fakes import (
    FakeProblem,
    FakeWorkerActor,
    fake_feature_set,
)
from tests.coordinator.fakes import ray_session as ray_session  # a fixture
from tests.coordinator.test_experiment import REPO, kill_then_resume, uninterrupted

SCREENING = {"enabled": True, "budget": 0.1, "max_rank": 0}
MODES = {
    "steady-state": {},
    "generational": {"offspring_per_step": 10},
    "asynchronous": {"asynchronous": True},
}


def config_of(**search):
    return parse_config(
        {
            "name": "screening",
            "search": {
                "population_size": 10,
                "max_evaluations": 70,
                "runs": 2,
                "seed": 5,
                "screening": SCREENING,
                **search,
            },
        }
    )


class Recording:
    """FakeProblem, keeping every screening request it was handed."""

    def __init__(self) -> None:
        self.problem = FakeProblem()
        self.requests: list[ScreeningRequest | None] = []

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        self.requests.append(screening)
        return self.problem.evaluate(masks, screening=screening)


def run(tmp_path: Path, config, cache=None) -> tuple[Experiment, Summary, Recording]:
    backend = Recording()
    experiment = Experiment(
        config, tmp_path / "out", "fake-features", 64, InProcessEvaluator(backend), cache=cache
    )
    experiment.start()
    return experiment, experiment.run(), backend


@pytest.mark.parametrize("mode", list(MODES))
def test_screened_masks_never_enter_a_population_or_a_front(tmp_path, mode):
    experiment, summary, _ = run(tmp_path, config_of(**MODES[mode]))
    rows = read_evaluations(tmp_path / "out")
    screened = {row["mask"] for row in rows if row["fidelity"] < 1}
    assert screened and len(screened) < len(rows), "the rule should stop some masks and keep others"
    assert summary.aggregate.screened_out == sum(row["fidelity"] < 1 for row in rows)
    for row in rows:
        expected = 0.1 if row["mask"] in screened else 1.0
        assert row["fidelity"] == expected
        assert row["epochs"] == (60.0 if row["mask"] in screened else 600.0)
    for run_state in experiment._runs:
        masks, _ = run_state.search.population()
        assert not {encode_mask(mask) for mask in masks} & screened
    front = pq.read_table(tmp_path / "out" / "front.parquet").to_pylist()
    assert front and not {row["mask"] for row in front} & screened
    # the budget is the same: screened masks count as evaluations
    assert summary.aggregate.evaluations == 140


def test_each_offspring_is_judged_against_its_parents_screening_objectives(tmp_path):
    config = config_of()
    _, _, backend = run(tmp_path, config)
    rows = read_evaluations(tmp_path / "out")
    # every population member was trained in full with its budget snapshot recorded
    snapshots = {
        (round(1 - row["screen_accuracy"], 9), row["active_fraction"], round(1 - row["screen_auroc"], 9))
        for row in rows
        if row["fidelity"] == 1
    }
    requests = [request for request in backend.requests if request is not None]
    assert len(requests) == len(backend.requests)  # every batch carries one, the initial ones included
    initial, later = requests[0], requests[1:]
    assert (initial.assignment == -1).all()
    judged = 0
    for request in later:
        assert request.epochs == 60
        for index in request.assignment:
            reference = request.references[index]
            assert len(reference) == config.search.population_size
            assert {tuple(np.round(point, 9)) for point in reference} <= snapshots
            judged += 1
    assert 0 < judged <= 140 - 20  # duplicates are hits, never sent again


def test_a_shared_cache_receives_only_full_fidelity_objectives(tmp_path):
    shared = LocalFitnessCache(tmp_path / "shared.jsonl")
    run(tmp_path, config_of(), cache=shared)
    rows = read_evaluations(tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "shared.jsonl").read_text().splitlines()]
    assert records and all(record["evaluation"]["fidelity"] == 1.0 for record in records)
    trained_full = {row["mask"] for row in rows if row["fidelity"] == 1 and not row["cached"]}
    assert len(records) == len(trained_full)
    assert any(row["fidelity"] < 1 and not row["cached"] for row in rows)  # there was something to keep out


def test_screening_off_changes_nothing_and_writes_no_screening_columns(tmp_path):
    config = config_of(screening={"enabled": False})
    _, _, backend = run(tmp_path, config)
    assert set(backend.requests) == {None}
    columns = pq.read_table(tmp_path / "out" / "evaluations.parquet").column_names
    assert "fidelity" in columns and "screen_accuracy" not in columns


@pytest.mark.parametrize("asynchronous", [False, True], ids=["steady-state", "asynchronous"])
def test_a_killed_screening_run_resumes_to_the_uninterrupted_result(tmp_path, asynchronous):
    config = tmp_path / "c.yaml"
    search = {"population_size": 10, "max_evaluations": 80, "runs": 2, "seed": 7, "screening": SCREENING}
    config.write_text(yaml.safe_dump({"name": "fake", "search": {**search, "asynchronous": asynchronous}}))
    expected = uninterrupted(tmp_path, config)
    log = tmp_path / "trained.log"
    environment = {**os.environ, "FAKE_DELAY_S": "0.05", "FAKE_LOG": str(log), "PYTHONPATH": str(REPO)}
    out = kill_then_resume(tmp_path, config, environment, kill_at_rows=70)
    rows = read_evaluations(out)

    def comparable(table):
        columns = ("run", "step", "mask", "accuracy", "auroc", "fidelity", "screen_accuracy", "screen_auroc")
        return [tuple(row[name] for name in columns) for row in table]

    assert any(row["fidelity"] < 1 for row in rows)
    assert comparable(rows) == comparable(expected)
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(tmp_path / "straight" / "front.parquet"))
    trained = log.read_text().split()
    assert len(trained) == len(set(trained)), "a mask was trained twice"


@pytest.mark.usefixtures("ray_session")
def test_requests_are_split_with_their_chunks_across_ray_workers():
    features = fake_feature_set(64)
    config = config_of()
    problem = FakeProblem()
    masks = np.random.default_rng(0).random((9, 64)) < 0.5
    reference = problem.evaluate(masks[:4])
    points = np.array([e.minimisation() for e in reference])
    request = ScreeningRequest(
        60, ScreeningRule(), (points, points[:1]), np.array([-1, 0, 1, 0, 1, 0, 1, 0, -1])
    )
    expected = problem.evaluate(masks, screening=request)
    evaluator = RayEvaluator(
        features,
        config,
        workers=2,
        actor_class=FakeWorkerActor,
        include_dashboard=False,
        max_masks_per_call=2,
    )
    try:
        got = evaluator.evaluate(masks, request)
        assert evaluator.calls >= 5  # the nine masks went out in chunks of at most two
    finally:
        evaluator.close()
    assert [(e.accuracy, e.auroc, e.fidelity) for e in got] == [
        (e.accuracy, e.auroc, e.fidelity) for e in expected
    ]
    assert any(e.fidelity < 1 for e in got)


def test_nsga2_leaves_screened_offspring_out_and_keeps_parents_in_its_state():
    search = SearchConfig(population_size=6, max_evaluations=12, offspring_per_step=3)
    problem = FakeProblem()
    run = NSGA2(64, search, seed=1)
    first = run.ask()
    assert first.parents.shape == (0, 64)
    with pytest.raises(SearchStateError, match="initial population"):
        run.tell(first.step, [Evaluation(0.5, 0.5, 0.5, fidelity=0.1)] * 6)
    run.tell(first.step, problem.evaluate(first.masks))
    step = run.ask()
    population, _ = run.population()
    assert (step.parents == population).all()
    saved = NSGA2.from_state(run.state_dict(), search)
    assert (saved.parents_of(step.step) == step.parents).all()
    results = problem.evaluate(step.masks)
    # the best possible objectives, but screened: they must not displace anyone
    perfect = [Evaluation(1.0, 0.0, 1.0, fidelity=0.1) for _ in results]
    run.tell(step.step, perfect)
    after, objectives = run.population()
    # the same members (selection may reorder them), none with the screened values
    assert sorted(encode_mask(m) for m in after) == sorted(encode_mask(m) for m in population)
    assert not (objectives == [0.0, 0.0, 0.0]).all(axis=1).any()


def test_screening_settings_are_checked_by_name():
    for bad, field in (
        ({"budget": 1.0}, "budget"),
        ({"max_rank": -1}, "max_rank"),
        ({"margin": 2}, "margin"),
    ):
        with pytest.raises(ConfigError, match=rf"search\.screening\.{field}"):
            parse_config({"search": {"screening": {"enabled": True, **bad}}})
    with pytest.raises(ConfigError, match=r"search\.screening"):
        parse_config({"search": {"screening": {"enabled": True, "budgett": 0.1}}})


REAL = {
    "name": "real-screening",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"layers": [32]},
    "training": {"max_epochs": 12, "learning_rate": 0.01},
    "search": {
        "population_size": 8,
        "max_evaluations": 24,
        "runs": 1,
        "seed": 3,
        "screening": {"enabled": True, "budget": 0.25},
    },
}


@pytest.mark.parametrize("mode", list(MODES))
def test_real_runs_hold_exactly_the_full_protocols_objectives(tmp_path, mode):
    """The real trainer: each full-fidelity row is what the unscreened evaluator gives that mask, bitwise."""
    from evoprune.shared.masks import decode_mask
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator
    from evoprune.workers.features.assemble import load_feature_set

    modes = {"generational": {"offspring_per_step": 8}}
    config = parse_config({**REAL, "search": {**REAL["search"], **modes.get(mode, MODES[mode])}})
    features = load_feature_set(config, progress=False)
    length = config.head.mask_length(features.input_dim)
    evaluator = InProcessEvaluator.for_feature_set(features, config)
    experiment = Experiment(config, tmp_path / "out", features.key, length, evaluator)
    experiment.start()
    experiment.run()
    rows = [row for row in read_evaluations(tmp_path / "out") if not row["cached"]]
    screened = [row for row in rows if row["fidelity"] < 1]
    full = [row for row in rows if row["fidelity"] == 1]
    assert screened and full
    short_training = config.training.model_copy(update={"max_epochs": 3})
    short = config.model_copy(update={"training": short_training})
    for protocol, chosen in ((config, full), (short, screened)):
        masks = np.array([decode_mask(row["mask"], length) for row in chosen])
        expected = BatchedEvaluator(features, protocol).evaluate(masks)
        got = [(row["accuracy"], row["auroc"], row["epochs"]) for row in chosen]
        assert got == [(e.accuracy, e.auroc, e.epochs) for e in expected]


@pytest.mark.usefixtures("ray_session")
def test_the_real_ray_worker_screens_as_the_in_process_evaluator_does():
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator
    from evoprune.workers.features.assemble import load_feature_set

    config = parse_config(REAL)
    features = load_feature_set(config, progress=False)
    length = config.head.mask_length(features.input_dim)
    masks = np.random.default_rng(4).random((4, length)) < np.linspace(0.2, 0.9, 4)[:, None]
    # a perfect parent at 50 % active: the two denser masks are hopeless, the sparser two go on
    request = ScreeningRequest(3, ScreeningRule(), (np.array([[0.0, 0.5, 0.0]]),), np.zeros(4, dtype=int))
    expected = BatchedEvaluator(features, config).evaluate(masks, request)
    evaluator = RayEvaluator(features, config, workers=1, include_dashboard=False)
    try:
        got = evaluator.evaluate(masks, request)
    finally:
        evaluator.close()
    assert [e.fidelity < 1 for e in got] == [False, False, True, True]
    fields = ("accuracy", "auroc", "epochs", "fidelity", "screen_accuracy", "screen_auroc", "screen_epochs")
    assert [[getattr(e, f) for f in fields] for e in got] == [
        [getattr(e, f) for f in fields] for e in expected
    ]
