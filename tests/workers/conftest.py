"""Small real feature sets for evaluator tests: sklearn digits with a held-out split and OoD rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

MAX_EPOCHS = 24  # of `stopping_config`
ROOT = Path(__file__).resolve().parents[2]


def json_under_jax(script: str, timeout: float = 900) -> Any:
    """Run `script` in a fresh process under Keras's JAX backend on the CPU; its last stdout line as JSON.

    The backend is chosen at Keras's import, so a test process that already runs TensorFlow compares
    against JAX this way. `{root}` in the script is the repository root (for `sys.path`, to import tests).
    """
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run(
        [sys.executable, "-c", script.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def digits_feature_set(samples: int = 600, folds: int = 1) -> FeatureSet:
    """Digits pixels scaled to [0, 1]; OoD = the same images flipped and inverted (real, off-manifold)."""
    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)[:samples]
    labels = digits.target.astype(np.int64)[:samples]
    built = []
    for fold in range(folds):
        train_x, test_x, train_y, test_y = train_test_split(
            features, labels, test_size=0.25, random_state=fold, stratify=labels
        )
        ood = (1.0 - test_x.reshape(-1, 8, 8)[:, ::-1, :]).reshape(len(test_x), 64).astype(np.float32)
        built.append(Fold(Split(train_x, train_y), Split(test_x, test_y), ood))
    return FeatureSet(f"digits-{samples}-{folds}", 10, tuple(built))


def wide_digits(width: int, samples: int = 300) -> FeatureSet:
    """Digits through a fixed random ReLU projection to `width` features (wider than one 128-term chunk)."""
    projection = np.random.default_rng(3).standard_normal((64, width)).astype(np.float32) / 8
    fold = digits_feature_set(samples=samples).folds[0]

    def widen(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ projection, 0).astype(np.float32)

    wide = Fold(
        Split(widen(fold.train.features), fold.train.labels),
        Split(widen(fold.evaluation.features), fold.evaluation.labels),
        widen(fold.ood),
    )
    return FeatureSet(f"wide-digits-{width}-{samples}", 10, (wide,))


@pytest.fixture(scope="session")
def digits_features() -> FeatureSet:
    return digits_feature_set()


def density_masks(count: int, length: int, seed: int = 0) -> np.ndarray:
    """Masks spread from sparse to dense."""
    generator = np.random.default_rng(seed)
    densities = np.linspace(0.1, 0.95, count)
    return generator.random((count, length)) < densities[:, None]


def stopping_config(head: dict, restore: str = "always") -> ExperimentConfig:
    """A protocol under which, on digits, some masks stop early (epochs 16, 21) and the others run out."""
    return ExperimentConfig.model_validate(
        {
            "head": head,
            "training": {
                "learning_rate": 0.02,
                "max_epochs": MAX_EPOCHS,
                "early_stopping": {"min_delta": 0.01, "patience": 2, "restore_best_weights": restore},
            },
        }
    )
