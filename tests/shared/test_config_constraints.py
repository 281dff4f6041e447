"""search.constraints: validation, and what it changes: the experiment's identity, not the fitness key."""

import pytest

from evoprune.coordinator.results.directory import experiment_fingerprint
from evoprune.shared.config import ConfigError, parse_config


def with_constraints(**constraints):
    return parse_config({"search": {"constraints": constraints}})


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        (
            {"max_active_fraction": 1.5},
            "search.constraints.max_active_fraction: Input should be less than or equal to 1",
        ),
        (
            {"max_active_fraction": 0},
            "search.constraints.max_active_fraction: Input should be greater than 0",
        ),
        (
            {"min_accuracy": -0.1},
            "search.constraints.min_accuracy: Input should be greater than or equal to 0",
        ),
        ({"min_auroc": 2}, "search.constraints.min_auroc: Input should be less than or equal to 1"),
        (
            {"max_head_parameters": -5},
            "search.constraints.max_head_parameters: Input should be greater than 0",
        ),
        ({"max_head_flops": 1.5}, "search.constraints.max_head_flops: Input should be a valid integer"),
        ({"max_neurons": 3}, "search.constraints.max_neurons: unknown key"),
    ],
)
def test_bad_constraints_name_the_field(constraints, message):
    with pytest.raises(ConfigError) as raised:
        with_constraints(**constraints)
    assert message in str(raised.value)


def test_constraints_change_the_experiment_but_not_the_fitness_key():
    plain = parse_config({})
    constrained = with_constraints(max_active_fraction=0.2, min_accuracy=0.9, max_head_parameters=1000)
    assert constrained.search.constraints.active and constrained.search.constraints.on_head_size
    assert experiment_fingerprint(constrained) != experiment_fingerprint(plain)
    assert experiment_fingerprint(constrained) != experiment_fingerprint(
        with_constraints(max_active_fraction=0.3)
    )
    # the objectives of a mask do not depend on the constraints: a shared fitness cache still hits
    assert constrained.protocol_fingerprint() == plain.protocol_fingerprint()


def test_unset_constraints_leave_the_identity_of_older_directories():
    # a directory written before constraints existed resumes: its stable dump holds no constraints key
    assert "constraints" not in parse_config({}).stable_dump()["search"]
    assert not parse_config({}).search.constraints.active
    assert "constraints" in with_constraints(min_accuracy=0.5).stable_dump()["search"]


def test_search_overrides_keep_the_constraints():
    config = with_constraints(max_active_fraction=0.25)
    assert config.with_search_overrides(runs=3).search.constraints.max_active_fraction == 0.25
