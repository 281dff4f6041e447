import numpy as np
import pytest

from evoprune.coordinator.nsga2 import NSGA2, SearchStateError, steps_in_flight
from evoprune.shared.config import SearchConfig
from evoprune.shared.objectives import minimisation_matrix
from evoprune.shared.pareto import hypervolume
from tests.coordinator.fakes import FakeProblem

PROBLEM = FakeProblem(length=64)


def run_search(search, seed, problem=PROBLEM):
    run = NSGA2(problem.length, search, seed)
    asked_sizes = []
    evaluations = []
    while not run.done:
        step = run.ask()
        asked_sizes.append(len(step.masks))
        result = problem.evaluate(step.masks)
        evaluations.extend(result)
        run.tell(step.step, result)
    return run, asked_sizes, evaluations


def test_defaults_follow_the_design():
    search = SearchConfig()
    assert (search.population_size, search.max_evaluations, search.offspring_per_step) == (30, 200, 2)
    run, sizes, evaluations = run_search(search, seed=0)
    assert sizes[0] == 30 and set(sizes[1:]) == {2} and sum(sizes) == 200 == len(evaluations)
    masks, objectives = run.population()
    assert masks.shape == (30, 64) and objectives.shape == (30, 3)


def test_initial_population_densities_spread_over_zero_to_one():
    run = NSGA2(200, SearchConfig(), seed=3)
    densities = run.ask().masks.mean(axis=1)
    assert densities.min() < 0.2 and densities.max() > 0.8
    # every density is round(p·L)/L for some p: a whole number of bits
    assert np.allclose(densities * 200, np.round(densities * 200))


def test_budget_not_divisible_by_offspring():
    search = SearchConfig(population_size=10, max_evaluations=25, offspring_per_step=4)
    _, sizes, _ = run_search(search, seed=1)
    assert sizes == [10, 4, 4, 4, 3]


def test_generational_mode_survivors_keep_population_size():
    search = SearchConfig(population_size=20, max_evaluations=100, offspring_per_step=20)
    run, sizes, _ = run_search(search, seed=2)
    assert sizes == [20] * 5
    assert len(run.population()[0]) == 20


def test_same_seed_same_search_and_different_seed_differs():
    search = SearchConfig(population_size=12, max_evaluations=60)
    _, _, first = run_search(search, seed=5)
    _, _, second = run_search(search, seed=5)
    _, _, other = run_search(search, seed=6)
    assert first == second
    assert first != other


def test_runs_do_not_touch_global_random_state():
    import random

    random.seed(0)
    np.random.seed(0)
    expected = (random.random(), np.random.random())
    random.seed(0)
    np.random.seed(0)
    run_search(SearchConfig(population_size=10, max_evaluations=30), seed=0)
    assert (random.random(), np.random.random()) == expected


def test_elitism_never_loses_the_best_accuracy():
    run = NSGA2(PROBLEM.length, SearchConfig(population_size=10, max_evaluations=80), seed=4)
    best = -1.0
    while not run.done:
        step = run.ask()
        run.tell(step.step, PROBLEM.evaluate(step.masks))
        _, objectives = run.population()
        current = float((1 - objectives[:, 0]).max())
        assert current >= best
        best = current


def test_tell_checks():
    run = NSGA2(8, SearchConfig(population_size=4, max_evaluations=10), seed=0)
    step = run.ask()
    assert not run.can_ask()
    with pytest.raises(SearchStateError):
        run.ask()
    with pytest.raises(SearchStateError, match="4 masks"):
        run.tell(step.step, PROBLEM.__class__(length=8).evaluate(step.masks[:2]))
    with pytest.raises(SearchStateError, match="not asked"):
        run.tell(7, [])


def asynchronous_run(search, seed, order_seed):
    """Runs with as many steps in flight as allowed, telling completions in a shuffled order."""
    order_rng = np.random.default_rng(order_seed)
    run = NSGA2(PROBLEM.length, search, seed)
    in_flight = []
    while not run.done:
        while run.can_ask():
            in_flight.append(run.ask())
        pick = int(order_rng.integers(len(in_flight)))
        step = in_flight.pop(pick)
        run.tell(step.step, PROBLEM.evaluate(step.masks))
    return run.population()


def test_asynchronous_mode_is_independent_of_completion_order():
    search = SearchConfig(population_size=10, max_evaluations=80, asynchronous=True)
    assert steps_in_flight(search) == 5
    reference = asynchronous_run(search, seed=3, order_seed=0)
    for order_seed in (1, 2, 3):
        masks, objectives = asynchronous_run(search, seed=3, order_seed=order_seed)
        assert np.array_equal(masks, reference[0]) and np.array_equal(objectives, reference[1])


@pytest.mark.parametrize("bookkeeping", ["deap", "jmetalpy"])
def test_state_round_trip_mid_run_continues_identically(bookkeeping):
    import json

    search = SearchConfig(population_size=10, max_evaluations=60, asynchronous=True, bookkeeping=bookkeeping)
    straight = asynchronous_run(search, seed=9, order_seed=0)

    order_rng = np.random.default_rng(0)
    run = NSGA2(PROBLEM.length, search, 9)
    in_flight = []
    rounds = 0
    while not run.done:
        while run.can_ask():
            in_flight.append(run.ask())
        pick = int(order_rng.integers(len(in_flight)))
        step = in_flight.pop(pick)
        run.tell(step.step, PROBLEM.evaluate(step.masks))
        rounds += 1
        if rounds % 4 == 0:
            state = json.loads(json.dumps(run.state_dict()))
            run = NSGA2.from_state(state, search)
            # what the tournament reads is restored as saved (jmetalpy's distances are not recomputable)
            assert json.loads(json.dumps(run.state_dict())) == state
            assert sorted(run.outstanding) == sorted(s.step for s in in_flight)
    masks, objectives = run.population()
    assert np.array_equal(masks, straight[0]) and np.array_equal(objectives, straight[1])


def random_search(budget, seed, problem=PROBLEM):
    run = NSGA2(problem.length, SearchConfig(population_size=budget, max_evaluations=budget), seed)
    return problem.evaluate(run.ask().masks)  # the reference's initialisation, all budget at once


def test_nsga2_beats_random_search_over_several_seeds():
    search = SearchConfig()
    seeds = range(6)
    nsga = [hypervolume(minimisation_matrix(run_search(search, seed)[2])) for seed in seeds]
    rand = [hypervolume(minimisation_matrix(random_search(200, 100 + seed))) for seed in seeds]
    wins = sum(a > b for a, b in zip(nsga, rand, strict=True))
    assert wins >= 5, (nsga, rand)
    assert np.mean(nsga) - np.mean(rand) > 0.02, (nsga, rand)
