"""The results directory's identity: fields added to the config later do not change an older directory's."""

from __future__ import annotations

from evoprune.coordinator.results.directory import experiment_fingerprint
from evoprune.shared.config import ADDED_FIELD_DEFAULTS, ExperimentConfig

# experiment_fingerprint of the default config as commit 4071760 (before the reference-parity fields)
# wrote it into checkpoints: a directory of that time must still resume
FINGERPRINT_AT_4071760 = "f0f92f8d54755aab0ebf68c39708cbf2"


def test_a_directory_written_before_the_added_fields_keeps_its_fingerprint() -> None:
    assert experiment_fingerprint(ExperimentConfig()) == FINGERPRINT_AT_4071760


# a value other than the default, per added field
OFF_DEFAULT = {
    ("dataset", "resize"): "nearest",
    ("training", "loss"): "keras2_clipped",
    ("training", "early_stopping", "decision"): "keras2_float64",
    ("robustness", "score_precision"): "float32",
    ("search", "bookkeeping"): "jmetalpy",
    ("search", "constraints"): {"max_active_fraction": 0.5},
}


def test_an_added_field_off_its_default_is_a_different_experiment() -> None:
    assert set(OFF_DEFAULT) == set(ADDED_FIELD_DEFAULTS), "give each added field a value off its default"
    default = experiment_fingerprint(ExperimentConfig())
    for path, value in OFF_DEFAULT.items():
        assert value != ADDED_FIELD_DEFAULTS[path], path
        data: dict = {}
        level = data
        for key in path[:-1]:
            level = level.setdefault(key, {})
        level[path[-1]] = value
        assert experiment_fingerprint(ExperimentConfig.model_validate(data)) != default, path
