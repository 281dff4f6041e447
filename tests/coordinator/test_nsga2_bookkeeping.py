"""NSGA-II bookkeeping as jMetalPy 1.5.7 (search.bookkeeping: jmetalpy) against a transcription of it."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.nsga2 import NSGA2, _rank_and_crowding
from evoprune.coordinator.results.directory import load_resumable
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.population import population_fronts
from evoprune.coordinator.results.writer import population_front, read_evaluations
from evoprune.shared.config import SearchConfig, parse_config
from evoprune.shared.masks import encode_mask
from evoprune.shared.objectives import Evaluation
from tests.coordinator.fakes import FakeProblem

# ---- a transcription of jMetalPy 1.5.7's NSGA-II replacement, written from its described behaviour --------


@dataclasses.dataclass
class Solution:
    mask: str
    objectives: tuple[float, ...]
    attributes: dict = dataclasses.field(default_factory=dict)


def dominance_test(first: Solution, second: Solution) -> int:
    """DominanceComparator.dominance_test: -1 when the first dominates, 1 when the second does, else 0."""
    better = any(a < b for a, b in zip(first.objectives, second.objectives, strict=True))
    worse = any(a > b for a, b in zip(first.objectives, second.objectives, strict=True))
    return 0 if better == worse else (-1 if better else 1)


def fast_non_dominated_ranking(solutions: list[Solution]) -> list[list[Solution]]:
    """FastNonDominatedRanking.compute_ranking: pairwise counts, then fronts peeled in discovery order."""
    dominated: list[list[int]] = [[] for _ in solutions]
    dominators = [0] * len(solutions)
    for p in range(len(solutions)):
        for q in range(p + 1, len(solutions)):
            flag = dominance_test(solutions[p], solutions[q])
            if flag:
                winner, loser = (p, q) if flag == -1 else (q, p)
                dominated[winner].append(loser)
                dominators[loser] += 1
    fronts = [[i for i in range(len(solutions)) if dominators[i] == 0]]
    while fronts[-1]:
        fronts.append([])
        for p in fronts[-2]:
            for q in dominated[p]:
                dominators[q] -= 1
                if dominators[q] == 0:
                    fronts[-1].append(q)
    for rank, front in enumerate(fronts[:-1]):
        for i in front:
            solutions[i].attributes["dominance_ranking"] = rank
    return [[solutions[i] for i in front] for front in fronts[:-1]]


def crowding_distance(front: list[Solution]) -> None:
    """CrowdingDistance.compute_density_estimator: each objective's sort starts from the previous one's."""
    if len(front) <= 2:
        for solution in front:
            solution.attributes["crowding_distance"] = math.inf
        return
    for solution in front:
        solution.attributes["crowding_distance"] = 0.0
    for objective in range(3):
        front = sorted(front, key=lambda s: s.objectives[objective])
        low, high = front[0].objectives[objective], front[-1].objectives[objective]
        front[0].attributes["crowding_distance"] = front[-1].attributes["crowding_distance"] = math.inf
        for j in range(1, len(front) - 1):
            gap = front[j + 1].objectives[objective] - front[j - 1].objectives[objective]
            gap = gap / (high - low) if high != low else gap
            front[j].attributes["crowding_distance"] += gap


def one_shot_replacement(population: list[Solution], offspring: list[Solution], size: int) -> list[Solution]:
    """RankingAndDensityEstimatorReplacement.replace with RemovalPolicyType.ONE_SHOT."""
    survivors: list[Solution] = []
    for front in fast_non_dominated_ranking(population + offspring):
        crowding_distance(front)
        if len(front) < size - len(survivors):
            survivors += front
            continue
        ordered = sorted(front, key=lambda s: -s.attributes["crowding_distance"])  # stable: ties keep order
        return survivors + ordered[: size - len(survivors)]
    return survivors


# ---- replaying a fixed sequence of objective vectors --------------------------------------------------

LENGTH = 48


def replayed_objectives(seed: int, count: int) -> np.ndarray:
    """Minimisation vectors on a coarse grid (quarters: exact in binary), so ties and duplicates abound."""
    return np.round(np.random.default_rng(seed).random((count, 3)) * 4) / 4


def evaluations_of(vectors: np.ndarray) -> list[Evaluation]:
    return [Evaluation(accuracy=1.0 - a, active_fraction=b, auroc=1.0 - c) for a, b, c in vectors]


def replay(bookkeeping: str, vectors: np.ndarray, population_size: int, seed: int = 0):
    """Drive a run told `vectors` in order; after each survival yield (run, the step that just survived)."""
    search = SearchConfig(
        population_size=population_size, max_evaluations=len(vectors), bookkeeping=bookkeeping
    )
    run = NSGA2(LENGTH, search, seed)
    told = 0
    previous = None
    while not run.done:
        step = run.ask()  # applies the previous step: the survival to inspect
        if previous is not None and previous.step > 0:
            yield run, previous
        run.tell(step.step, evaluations_of(vectors[told : told + len(step.masks)]))
        told += len(step.masks)
        previous = step


@pytest.mark.parametrize("seed", range(4))
def test_jmetalpy_bookkeeping_keeps_the_joins_ranks_and_distances_as_the_transcription(seed):
    population_size, offspring = 8, 2
    vectors = replayed_objectives(seed, population_size + offspring * 30)
    solutions: list[Solution] = []
    told = 0
    survivals = differing = 0
    for run, step in replay("jmetalpy", vectors, population_size, seed):
        if not solutions:  # the initial population, in the order it was asked
            solutions = [
                Solution(encode_mask(mask), tuple(point))
                for mask, point in zip(step.parents, vectors[:population_size], strict=True)
            ]
            told = population_size
        children = [
            Solution(encode_mask(mask), tuple(point))
            for mask, point in zip(step.masks, vectors[told : told + len(step.masks)], strict=True)
        ]
        told += len(step.masks)
        solutions = one_shot_replacement(solutions, children, population_size)
        assert [encode_mask(mask) for mask in run._population] == [s.mask for s in solutions]
        assert run._objectives.tolist() == [list(s.objectives) for s in solutions]
        assert run._rank.tolist() == [s.attributes["dominance_ranking"] for s in solutions]
        assert run._crowding.tolist() == [s.attributes["crowding_distance"] for s in solutions]
        survivals += 1
        # the point of the option: distances of the join, not of the survivors among themselves
        differing += not np.array_equal(run._crowding, _rank_and_crowding(run._objectives)[1])
    assert survivals >= 25 and differing >= 3, (survivals, differing)


def test_deap_bookkeeping_recomputes_on_the_survivors():
    vectors = replayed_objectives(0, 8 + 2 * 30)
    for run, _ in replay("deap", vectors, 8):
        rank, crowding = _rank_and_crowding(run._objectives)
        assert np.array_equal(run._rank, rank) and np.array_equal(run._crowding, crowding)


# ---- the first tournament -------------------------------------------------------------------------------


def first_parents(bookkeeping: str, seeds: range) -> np.ndarray:
    """How often each initial member is a parent of step 1 (member 0 dominates 1, which dominates 2, ...)."""
    chain = np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [0.5, 0.5, 0.5], [0.7, 0.7, 0.7]])
    # no crossover and (practically) no mutation: each child is its parent's copy
    search = SearchConfig(
        population_size=4,
        max_evaluations=6,
        crossover_probability=0.0,
        mutation_probability=1e-12,
        bookkeeping=bookkeeping,
    )
    counts = np.zeros(len(chain), dtype=np.int64)
    for seed in seeds:
        run = NSGA2(64, search, seed)
        initial = run.ask()
        run.tell(initial.step, evaluations_of(chain))
        members = [encode_mask(mask) for mask in initial.masks]
        if len(set(members)) < len(members):
            continue  # two equal initial masks: a parent could not be named
        for child in run.ask().masks:
            counts[members.index(encode_mask(child))] += 1
    return counts


def test_the_first_tournament_is_uniform_under_jmetalpy_and_ranked_under_deap():
    jmetalpy = first_parents("jmetalpy", range(600))
    deap = first_parents("deap", range(600))
    # 1200 picks: a uniform pick gives each member 300 ± 15 (one standard deviation)
    assert np.all(np.abs(jmetalpy / jmetalpy.sum() - 0.25) < 0.05), jmetalpy
    # ranked: the best member wins every tournament it is drawn into (half of them), the worst none
    assert deap[0] / deap.sum() == pytest.approx(0.5, abs=0.05) and deap[3] == 0, deap


# ---- the population front -----------------------------------------------------------------------------


def row(mask: str, accuracy: float, active: float, auroc: float) -> dict:
    return {"mask": mask, "accuracy": accuracy, "active_fraction": active, "auroc": auroc}


def test_the_population_front_keeps_the_first_member_of_each_objective_vector():
    rows = [
        row("aa", 0.9, 0.5, 0.8),
        row("bb", 0.9, 0.5, 0.8),  # the same objectives as aa: the reference's front shows one of them
        row("cc", 0.8, 0.6, 0.7),  # dominated
        row("dd", 0.7, 0.2, 0.9),
    ]
    population = ["bb", "cc", "aa", "dd", "bb"]
    assert {r["mask"] for r in population_front(rows, population)} == {"aa", "bb", "dd"}
    # the first in population order is kept, as jMetalPy's non-dominated archive keeps the first it is given
    kept = population_front(rows, population, distinct_objectives=True)
    assert [r["mask"] for r in kept] == ["bb", "dd"]


class CoarseProblem(FakeProblem):
    """FakeProblem with accuracy and AUROC rounded to tenths: distinct masks often share objectives."""

    def evaluate(self, masks, worker="fake", screening=None):
        return [
            dataclasses.replace(e, accuracy=round(e.accuracy, 1), auroc=round(e.auroc, 1))
            for e in super().evaluate(masks, worker, screening)
        ]


SEARCH = {"population_size": 10, "max_evaluations": 70, "runs": 2, "seed": 3, "bookkeeping": "jmetalpy"}


def vectors_of(rows: list[dict]) -> list[tuple]:
    return [(r["accuracy"], r["active_fraction"], r["auroc"]) for r in rows]


def test_jmetalpy_experiment_fronts_are_deduplicated_and_resume_to_the_uninterrupted_result(tmp_path):
    config = parse_config({"name": "jmetalpy", "search": SEARCH})
    straight = Experiment(config, tmp_path / "straight", "coarse", 64, InProcessEvaluator(CoarseProblem()))
    straight.start()
    straight.run()

    out = tmp_path / "cancelled"
    experiment = Experiment(config, out, "coarse", 64, InProcessEvaluator(CoarseProblem()))
    experiment.start()
    assert experiment.run(should_stop=lambda: experiment.evaluations_done >= 50).status == "cancelled"
    checkpoint = json.loads(ResultsLayout(out).checkpoint.read_text())
    assert all("crowding" in state for state in checkpoint["runs"])
    config_again, saved = load_resumable(out)
    resumed = Experiment(config_again, out, "coarse", 64, InProcessEvaluator(CoarseProblem()))
    resumed.restore(saved)
    assert resumed.run().status == "succeeded"
    keys = ("run", "step", "mask", "accuracy", "active_fraction", "auroc")
    assert [tuple(r[k] for k in keys) for r in read_evaluations(out)] == [
        tuple(r[k] for k in keys) for r in read_evaluations(tmp_path / "straight")
    ]
    written = pq.read_table(out / "front.parquet").to_pylist()
    assert pq.read_table(tmp_path / "straight" / "front.parquet").to_pylist() == written

    rows = read_evaluations(out)
    duplicates_dropped = 0
    for run in (0, 1, -1):
        population = [r for r in written if r["run"] == run and r["kind"] == "population"]
        assert len(set(vectors_of(population))) == len(population)
        live = population_fronts(out, config.search)[run]
        assert sorted(live.masks) == sorted(r["mask"] for r in population)
        if run >= 0:
            members = [encode_mask(mask) for mask in resumed._runs[run].search.population()[0]]
            run_rows = [r for r in rows if r["run"] == run]
            duplicates_dropped += len(population_front(run_rows, members)) - len(population)
    # the problem is coarse enough that some front member had a twin the reference's front drops
    assert duplicates_dropped > 0


def test_a_state_without_stored_distances_still_loads():
    # states written before the option (deap's, which leave them out) are read by the live fronts whatever
    # the config now says; they load with ranks and distances recomputed from their population
    deap = SearchConfig(population_size=8, max_evaluations=30)
    run = NSGA2(LENGTH, deap, 1)
    for _ in range(4):
        step = run.ask()
        run.tell(step.step, FakeProblem(length=LENGTH).evaluate(step.masks))
    state = json.loads(json.dumps(run.state_dict()))
    assert "crowding" not in state
    loaded = NSGA2.from_state(state, deap.model_copy(update={"bookkeeping": "jmetalpy"}))
    assert np.array_equal(loaded.population()[0], run.population()[0])
    rank, crowding = _rank_and_crowding(loaded._objectives)
    assert np.array_equal(loaded._rank, rank) and np.array_equal(loaded._crowding, crowding)
