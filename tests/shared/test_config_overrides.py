"""Changes made on the typed config itself: search overrides, and the stored search section read alone."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evoprune.shared.config import (
    ConfigError,
    ExperimentConfig,
    SearchConfig,
    demo_config_path,
    load_config,
    parse_config,
)


def _patched_and_parsed(config: ExperimentConfig, **given: int) -> ExperimentConfig:
    """How overrides used to be applied: the whole config dumped, patched and parsed again."""
    data = config.model_dump(mode="json")
    data["search"].update(given)
    return parse_config(data)


def test_overrides_give_the_config_a_full_parse_would_give():
    config = load_config(demo_config_path())
    overridden = config.with_search_overrides(runs=3, max_evaluations=90, seed=40)
    assert (overridden.search.runs, overridden.search.max_evaluations, overridden.search.seed) == (3, 90, 40)
    expected = _patched_and_parsed(config, runs=3, max_evaluations=90, seed=40)
    assert overridden == expected
    assert overridden.stable_dump() == expected.stable_dump()
    assert overridden.protocol_fingerprint() == config.protocol_fingerprint()
    # nothing but the search section was built again
    assert overridden.training is config.training and overridden.dataset is config.dataset
    assert overridden.search.screening is config.search.screening
    assert config.search.runs != 3, "the original is left as it was"


def test_no_override_is_the_config_itself():
    config = parse_config({})
    assert config.with_search_overrides() is config
    assert config.with_search_overrides(runs=None, seed=None) is config


def test_the_reference_preset_stays_resolved_under_overrides():
    config = parse_config({"protocol": "reference", "search": {"population_size": 4, "max_evaluations": 8}})
    overridden = config.with_search_overrides(seed=5)
    assert overridden.search.bookkeeping == "jmetalpy" and overridden.search.seed == 5
    assert overridden == _patched_and_parsed(config, seed=5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runs": 0}, "search.runs: Input should be greater than or equal to 1"),
        ({"max_evaluations": 10}, "search: population_size (30) is larger than max_evaluations (10)"),
    ],
)
def test_an_override_out_of_bounds_names_its_field(overrides, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({}).with_search_overrides(**overrides, origin="demo.yaml with command-line overrides")
    assert raised.value.origin == "demo.yaml with command-line overrides"
    assert any(problem.startswith(message) for problem in raised.value.problems), raised.value.problems
    with pytest.raises(ConfigError) as parsed:
        _patched_and_parsed(parse_config({}), **overrides)
    assert raised.value.problems == parsed.value.problems, "the same messages as a whole config's"


def test_the_stored_search_is_the_search_a_whole_parse_gives():
    config = load_config(demo_config_path()).with_search_overrides(runs=2)
    stored = config.model_dump(mode="json")
    assert ExperimentConfig.stored_search(stored) == config.search
    # a record stored before `bookkeeping` existed, under the reference preset: the preset fills it in
    old = {"protocol": "reference", "search": {"population_size": 4, "max_evaluations": 8}}
    assert ExperimentConfig.stored_search(old) == parse_config(old).search
    assert ExperimentConfig.stored_search(old).bookkeeping == "jmetalpy"
    explicit = {"protocol": "reference", "search": {"bookkeeping": "deap"}}
    assert ExperimentConfig.stored_search(explicit).bookkeeping == "deap"
    assert ExperimentConfig.stored_search({}) == SearchConfig()


def test_the_stored_search_ignores_other_sections_and_refuses_a_bad_search():
    # another section that no longer validates does not hide the search
    assert ExperimentConfig.stored_search({"dataset": {"sourse": "x"}, "search": {"runs": 4}}).runs == 4
    with pytest.raises(ValidationError):
        ExperimentConfig.stored_search({"search": {"runs": 0}})
