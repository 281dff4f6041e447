"""The results directory's identity: fields added to the config later do not change an older directory's."""

from __future__ import annotations

from evoprune.coordinator.results.directory import experiment_fingerprint
from evoprune.shared.config import ADDED_FIELD_DEFAULTS, ExperimentConfig

# experiment_fingerprint of the default config as commit 4071760 (before the reference-parity fields)
# wrote it into checkpoints: a directory of that time must still resume
FINGERPRINT_AT_4071760 = "f0f92f8d54755aab0ebf68c39708cbf2"


def test_a_directory_written_before_the_added_fields_keeps_its_fingerprint() -> None:
    assert experiment_fingerprint(ExperimentConfig()) == FINGERPRINT_AT_4071760


def test_an_added_field_off_its_default_is_a_different_experiment() -> None:
    default = experiment_fingerprint(ExperimentConfig())
    for path, value in ADDED_FIELD_DEFAULTS.items():
        data: dict = {}
        level = data
        for key in path[:-1]:
            level = level.setdefault(key, {})
        other = {"bilinear": "nearest", "exact": "keras2_clipped", "float32": "keras2_float64"}
        level[path[-1]] = other.get(value, {"float64": "float32", "deap": "jmetalpy"}.get(value))
        assert experiment_fingerprint(ExperimentConfig.model_validate(data)) != default, path
