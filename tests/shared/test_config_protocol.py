"""The `protocol: reference` preset: what it selects, and that fields set explicitly win over it."""

from __future__ import annotations

import pytest
import yaml

from evoprune.shared.config import (
    REFERENCE_PROTOCOL,
    ConfigError,
    ExperimentConfig,
    RobustnessConfig,
    parse_config,
)


def _field(config: ExperimentConfig, path: tuple[str, ...]):
    value = config
    for name in path:
        value = getattr(value, name)
    return value


def test_the_preset_selects_every_reference_behaviour():
    config = parse_config({"protocol": "reference"})
    assert config.robustness.auroc_estimator == "reference"
    assert config.robustness.ood_sampling == "first_n"
    assert config.training.early_stopping.restore_best_weights == "when_stopped"
    for path, value in REFERENCE_PROTOCOL.items():
        assert _field(config, path) == value
        assert _field(parse_config({}), path) != value, f"{path}: the default already is the reference"


def test_fields_set_explicitly_win_over_the_preset():
    config = parse_config(
        {
            "protocol": "reference",
            "robustness": {"auroc_estimator": "exact", "temperature": 10.0},
            "training": {"early_stopping": {"patience": 3, "restore_best_weights": True}},
        }
    )
    assert (config.robustness.auroc_estimator, config.robustness.temperature) == ("exact", 10.0)
    assert config.robustness.ood_sampling == "first_n"  # unset: the preset's
    early_stopping = config.training.early_stopping
    assert (early_stopping.patience, early_stopping.restore_best_weights) == (3, "always")
    # sections given as models count only the fields their author set
    built = ExperimentConfig(protocol="reference", robustness=RobustnessConfig(temperature=10.0))
    assert (built.robustness.temperature, built.robustness.auroc_estimator) == (10.0, "reference")


def test_the_resolved_config_reads_back_to_itself():
    config = parse_config({"protocol": "reference", "robustness": {"auroc_estimator": "exact"}})
    assert parse_config(yaml.safe_load(config.to_yaml())) == config


def test_the_preset_changes_the_fitness_protocol_and_a_bad_section_is_still_named():
    assert (
        parse_config({"protocol": "reference"}).protocol_fingerprint()
        != parse_config({}).protocol_fingerprint()
    )
    with pytest.raises(ConfigError, match="robustness"):
        parse_config({"protocol": "reference", "robustness": 5})
    with pytest.raises(ConfigError, match="protocol"):
        parse_config({"protocol": "paper"})
