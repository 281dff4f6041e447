"""Tiny real results directories for the analysis tests: the real Experiment and batched evaluator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.shared.config import ExperimentConfig, parse_config
from evoprune.workers.features.assemble import load_feature_set
from evoprune.workers.features.feature_set import FeatureSet

DIGITS = {
    "name": "tiny",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"layers": [64]},
    "training": {"max_epochs": 3},
    "search": {"population_size": 8, "max_evaluations": 16, "runs": 2, "seed": 3},
}


def tiny_config(cache_dir: Path, **sections: Any) -> ExperimentConfig:
    """The demo's data with a small head, a short training and a small search budget."""
    data: dict[str, Any] = {**DIGITS, "cache_dir": str(cache_dir)}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data)


def run_experiment(config: ExperimentConfig, results_dir: Path) -> FeatureSet:
    """Run the experiment to the end in this process; return its features."""
    features = load_feature_set(config, progress=False)
    evaluator = InProcessEvaluator.for_feature_set(features, config)
    mask_length = config.head.mask_length(features.input_dim)
    experiment = Experiment(config, results_dir, features.key, mask_length, evaluator)
    experiment.start()
    experiment.run()
    return features


def session_results(base: Path) -> tuple[Path, ExperimentConfig, FeatureSet]:
    """A finished tiny experiment under `base`, run once per test session and shared by test modules.

    Args:
        base: the session's base temporary folder (tmp_path_factory.getbasetemp()).

    Returns:
        (results directory, config, features). Copy the directory before changing anything in it.

    """
    results_dir = base / "tiny-results"
    config = tiny_config(base / "tiny-cache")
    if (results_dir / "summary.json").exists():
        return results_dir, config, load_feature_set(config, progress=False)
    return results_dir, config, run_experiment(config, results_dir)
