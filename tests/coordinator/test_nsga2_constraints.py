"""NSGA-II under search.constraints: Deb's rule in survival and tournament, in every mode; resumable."""

import json

import numpy as np
import pytest

from evoprune.coordinator.constraints import Constraints
from evoprune.coordinator.nsga2 import NSGA2, SearchStateError
from evoprune.shared.config import ConstraintsConfig, SearchConfig, parse_config
from evoprune.shared.objectives import Evaluation
from tests.coordinator.fakes import FakeProblem

PROBLEM = FakeProblem(length=64)
CAP = ConstraintsConfig(max_active_fraction=0.2)
MODES = {
    "steady-state": {"population_size": 10, "max_evaluations": 150},
    "generational": {"population_size": 10, "max_evaluations": 150, "offspring_per_step": 10},
    "asynchronous": {"population_size": 10, "max_evaluations": 150, "asynchronous": True},
}


def shuffled_run(search, seed, order_seed, state_every=0):
    """Run with every allowed step in flight, told in a shuffled order; optionally saved and reloaded."""
    order_rng = np.random.default_rng(order_seed)
    run = NSGA2(PROBLEM.length, search, seed)
    in_flight, told = [], 0
    while not run.done:
        while run.can_ask():
            in_flight.append(run.ask())
        step = in_flight.pop(int(order_rng.integers(len(in_flight))))
        run.tell(step.step, PROBLEM.evaluate(step.masks))
        told += 1
        if state_every and told % state_every == 0:
            state = json.loads(json.dumps(run.state_dict()))
            run = NSGA2.from_state(state, search)
            assert json.loads(json.dumps(run.state_dict())) == state
    return run.population_with_violations()


@pytest.mark.parametrize("bookkeeping", ["deap", "jmetalpy"])
@pytest.mark.parametrize("mode", list(MODES))
def test_the_population_fills_with_feasible_masks_and_never_loses_one(mode, bookkeeping):
    search = SearchConfig(**MODES[mode], bookkeeping=bookkeeping, constraints=CAP)
    run = NSGA2(PROBLEM.length, search, seed=1)
    feasible_before = 0
    while not run.done:
        step = run.ask()
        run.tell(step.step, PROBLEM.evaluate(step.masks))
        masks, _, violation = run.population_with_violations()
        assert np.array_equal(violation == 0, masks.mean(axis=1) <= 0.2)
        # Deb's rule: a feasible member only ever gives way to a feasible one
        offspring_feasible = 0 if step.step == 0 else int(np.count_nonzero(step.masks.mean(axis=1) <= 0.2))
        expected = min(search.population_size, feasible_before + offspring_feasible)
        if step.step == 0:
            expected = int(np.count_nonzero(violation == 0))
        assert np.count_nonzero(violation == 0) == expected
        feasible_before = expected
    # the initial densities spread over [0, 1]; at the end every survivor keeps to the cap
    assert feasible_before == search.population_size
    unconstrained = NSGA2(PROBLEM.length, SearchConfig(**MODES[mode], bookkeeping=bookkeeping), seed=1)
    while not unconstrained.done:
        step = unconstrained.ask()
        unconstrained.tell(step.step, PROBLEM.evaluate(step.masks))
    assert np.any(unconstrained.population()[0].mean(axis=1) > 0.2), "the cap should bind on this problem"


def evaluation(accuracy, active):
    return Evaluation(accuracy=accuracy, active_fraction=active, auroc=0.5)


@pytest.mark.parametrize("bookkeeping", ["deap", "jmetalpy"])
def test_survival_follows_debs_rule(bookkeeping):
    search = SearchConfig(
        population_size=4,
        max_evaluations=8,
        bookkeeping=bookkeeping,
        constraints={"max_active_fraction": 0.5},
    )
    run = NSGA2(8, search, seed=0)
    first = run.ask()
    # A and B dominate every feasible point but break the cap; C and D keep to it
    run.tell(
        first.step, [evaluation(0.9, 0.8), evaluation(0.95, 0.9), evaluation(0.5, 0.3), evaluation(0.6, 0.4)]
    )
    offspring = run.ask()
    # E violates least (0.1); F is feasible though C dominates it
    run.tell(offspring.step, [evaluation(0.99, 0.6), evaluation(0.4, 0.45)])
    _, objectives, violation = run.population_with_violations()
    survivors = sorted((round(1 - point[0], 2), point[1]) for point in objectives)
    assert survivors == [(0.4, 0.45), (0.5, 0.3), (0.6, 0.4), (0.99, 0.6)]
    assert sorted(violation.round(6).tolist()) == [0.0, 0.0, 0.0, 0.1]
    # the next ask applies the step; the tournament reads constrained ranks: C, D first, then F, then E
    run.ask()
    by_accuracy = {
        round(1 - point[0], 2): int(rank) for point, rank in zip(run._objectives, run._rank, strict=True)
    }
    assert by_accuracy == {0.5: 0, 0.6: 0, 0.4: 1, 0.99: 2}


def test_asynchronous_constrained_search_is_independent_of_completion_order():
    search = SearchConfig(**MODES["asynchronous"], constraints=ConstraintsConfig(min_accuracy=0.8))
    reference = shuffled_run(search, seed=3, order_seed=0)
    for order_seed in (1, 2):
        result = shuffled_run(search, seed=3, order_seed=order_seed)
        assert all(np.array_equal(a, b) for a, b in zip(result, reference, strict=True))


@pytest.mark.parametrize("bookkeeping", ["deap", "jmetalpy"])
def test_state_round_trips_continue_identically(bookkeeping):
    search = SearchConfig(**MODES["asynchronous"], bookkeeping=bookkeeping, constraints=CAP)
    straight = shuffled_run(search, seed=9, order_seed=0)
    resumed = shuffled_run(search, seed=9, order_seed=0, state_every=3)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, straight, strict=True))


def test_a_head_budget_needs_the_layout_to_tell_but_not_to_read():
    config = parse_config(
        {
            "head": {"layers": [16]},
            "search": {
                "population_size": 4,
                "max_evaluations": 8,
                "constraints": {"max_head_parameters": 300},
            },
        }
    )
    constraints = Constraints.of(config, PROBLEM.length, 3)
    run = NSGA2(PROBLEM.length, config.search, 0, constraints)
    step = run.ask()
    run.tell(step.step, PROBLEM.evaluate(step.masks))
    # 64 inputs → 16 → 3: a mask keeps k·16 + 51 weights, so at most 15 inputs fit 300
    _, _, violation = run.population_with_violations()
    assert np.array_equal(violation == 0, step.masks.sum(axis=1) * 16 + 51 <= 300)
    # a reader of the checkpoint (the live fronts) needs no layout: the violations are in the state
    reader = NSGA2.from_state(json.loads(json.dumps(run.state_dict())), config.search)
    assert np.array_equal(reader.population_with_violations()[2], violation)
    blind = NSGA2(PROBLEM.length, config.search, 0)
    with pytest.raises(SearchStateError, match="head budget"):
        blind.tell(blind.ask().step, PROBLEM.evaluate(step.masks))
