"""From a config to a FeatureSet: splits, validation slices, k folds, OoD draws and the content key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evoprune.shared.config import parse_config
from evoprune.workers.features.assemble import (
    extract_features,
    load_feature_set,
    stratified_folds,
    stratified_holdout,
)
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_cache import FeatureTable, write_feature_file


def config(tmp_path: Path, **overrides):
    data: dict[str, Any] = {
        "dataset": {"source": "sklearn:digits"},
        "ood": [{"source": "sklearn:sample_images"}],
        "backbone": {"name": "pixels"},
        "cache_dir": str(tmp_path / "cache"),
    }
    for key, value in overrides.items():
        data[key] = data[key] | value if isinstance(value, dict) and key in data else value
    return parse_config(data)


def own_features(path: Path, labels: np.ndarray, splits=None, folds=None, width: int = 3) -> Path:
    """A features file whose first feature is the row number, so rows can be traced through the splits."""
    rows = len(labels)
    features = np.zeros((rows, width), np.float32)
    features[:, 0] = np.arange(rows)
    features[:, 1:] = np.random.default_rng(0).normal(size=(rows, width - 1))
    splits = np.array(splits if splits is not None else ["train"] * rows)
    table = FeatureTable(features, labels.astype(np.int64), splits, folds, (), "")
    write_feature_file(path, table, {})
    return path


def rows_of(split) -> set[int]:
    return set(split.features[:, 0].astype(int).tolist())


def test_demo_test_split(tmp_path):
    features = load_feature_set(config(tmp_path), progress=False)
    assert features.num_classes == 10 and features.input_dim == 64 and len(features.folds) == 1
    fold = features.folds[0]
    assert (len(fold.train), len(fold.evaluation)) == (1438, 359)
    assert fold.ood.shape == (359, 64) and fold.ood.dtype == np.float32
    assert fold.test is None and fold.test_ood is None
    assert fold.train.features.dtype == np.float32 and fold.train.labels.dtype == np.int64
    # Stratified: every class holds out about a fifth.
    shares = np.bincount(fold.evaluation.labels) / (
        np.bincount(fold.evaluation.labels) + np.bincount(fold.train.labels)
    )
    assert np.all(np.abs(shares - 0.2) < 0.01)


def test_same_inputs_same_set_and_key(tmp_path):
    first = load_feature_set(config(tmp_path), progress=False)
    second = load_feature_set(config(tmp_path), progress=False)
    assert first.key == second.key
    assert np.array_equal(first.folds[0].ood, second.folds[0].ood)
    assert np.array_equal(first.folds[0].evaluation.features, second.folds[0].evaluation.features)
    reseeded = load_feature_set(config(tmp_path, dataset={"split_seed": 1}), progress=False)
    assert reseeded.key != first.key
    assert not np.array_equal(reseeded.folds[0].ood, first.folds[0].ood)
    no_ood = load_feature_set(config(tmp_path, ood=[]), progress=False)
    assert no_ood.key != first.key and no_ood.folds[0].ood.shape == (0, 64)


def test_validation_split_is_stratified_and_seeded(tmp_path):
    labels = np.repeat(np.arange(4), [40, 60, 80, 20])
    own = own_features(tmp_path / "own.parquet", labels, splits=["train"] * 160 + ["test"] * 40)
    base = config(tmp_path, dataset={"source": f"features:{own}", "validation_fraction": 0.25}, ood=[])
    validation = base.model_copy(update={"fitness_split": "validation"})
    fold = load_feature_set(validation, progress=False).folds[0]
    assert rows_of(fold.test) == set(range(160, 200))
    assert not rows_of(fold.train) & rows_of(fold.evaluation)
    assert rows_of(fold.train) | rows_of(fold.evaluation) == set(range(160))
    train_counts = np.bincount(labels[:160])
    assert np.bincount(fold.evaluation.labels).tolist() == np.rint(train_counts * 0.25).astype(int).tolist()
    again = load_feature_set(validation, progress=False).folds[0]
    assert rows_of(again.evaluation) == rows_of(fold.evaluation)
    other_seed = validation.model_copy(
        update={"dataset": validation.dataset.model_copy(update={"split_seed": 5})}
    )
    assert rows_of(load_feature_set(other_seed, progress=False).folds[0].evaluation) != rows_of(
        fold.evaluation
    )
    assert load_feature_set(base, progress=False).key != load_feature_set(validation, progress=False).key


def test_validation_mode_fills_test_and_its_own_ood(tmp_path):
    features = load_feature_set(config(tmp_path, fitness_split="validation"), progress=False)
    fold = features.folds[0]
    assert fold.test is not None and len(fold.test) == 359
    assert fold.test_ood is not None and fold.test_ood.shape == (359, 64)
    assert len(fold.evaluation) + len(fold.train) == 1438
    assert fold.ood.shape == (len(fold.evaluation), 64)


def test_native_validation_rows(tmp_path):
    labels = np.tile(np.arange(2), 10)
    splits = ["train"] * 12 + ["validation"] * 4 + ["test"] * 4
    own = own_features(tmp_path / "own.parquet", labels, splits=splits)
    on_test = config(tmp_path, dataset={"source": f"features:{own}"}, ood=[])
    fold = load_feature_set(on_test, progress=False).folds[0]
    assert rows_of(fold.train) == set(range(16)) and rows_of(fold.evaluation) == set(range(16, 20))
    on_validation = on_test.model_copy(update={"fitness_split": "validation"})
    fold = load_feature_set(on_validation, progress=False).folds[0]
    assert rows_of(fold.train) == set(range(12)) and rows_of(fold.evaluation) == set(range(12, 16))
    assert rows_of(fold.test) == set(range(16, 20))


def test_kfold_from_a_fold_column(tmp_path):
    labels = np.tile(np.arange(3), 10)
    folds = np.arange(30) % 5
    own = own_features(tmp_path / "own.parquet", labels, folds=folds)
    features = load_feature_set(
        config(tmp_path, dataset={"source": f"features:{own}", "folds": 5}, ood=[]), progress=False
    )
    assert len(features.folds) == 5
    for index, fold in enumerate(features.folds):
        assert rows_of(fold.evaluation) == set(np.flatnonzero(folds == index).tolist())
        assert rows_of(fold.train) == set(np.flatnonzero(folds != index).tolist())
    with pytest.raises(DatasetError, match=r"dataset\.folds is 4 but the data has 5"):
        load_feature_set(
            config(tmp_path, dataset={"source": f"features:{own}", "folds": 4}, ood=[]), progress=False
        )


def test_kfold_from_partition_folders_with_ood(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "coral"
    for partition in range(3):
        for name, count in (("a", 4), ("b", 2)):
            (root / f"partition{partition}" / name).mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"partition{partition}" / name / f"{index}.png")
    ood_root = tmp_path / "ood" / "only"
    ood_root.mkdir(parents=True)
    for index in range(5):
        Image.fromarray(rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)).save(ood_root / f"{index}.jpg")
    experiment = config(
        tmp_path,
        dataset={"source": f"folder:{root}", "image_size": (4, 4), "num_classes": 2},
        ood=[{"source": f"folder:{ood_root.parent}"}],
    )
    features = load_feature_set(experiment, progress=False)
    assert len(features.folds) == 3 and features.num_classes == 2 and features.input_dim == 48
    for fold in features.folds:
        assert (len(fold.train), len(fold.evaluation)) == (12, 6)
        assert fold.ood.shape == (5, 48)  # the pool has 5 images for 6 needed: all are used
    with_validation = experiment.model_copy(update={"fitness_split": "validation"})
    for fold in load_feature_set(with_validation, progress=False).folds:
        assert fold.test is not None and len(fold.test) == 6 and len(fold.train) + len(fold.evaluation) == 12


def test_folds_requested_for_a_plain_source_are_dealt_stratified(tmp_path):
    features = load_feature_set(config(tmp_path, dataset={"folds": 3}), progress=False)
    sizes = [len(fold.evaluation) for fold in features.folds]
    assert sum(sizes) == 1797 and max(sizes) - min(sizes) <= 1
    assert all(len(fold.ood) == len(fold.evaluation) for fold in features.folds)


def test_num_classes_is_checked(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset.num_classes is 9 but sklearn:digits has 10 classes"):
        load_feature_set(config(tmp_path, dataset={"num_classes": 9}), progress=False)
    own = own_features(tmp_path / "own.parquet", np.tile(np.arange(3), 5))
    widened = config(tmp_path, dataset={"source": f"features:{own}", "num_classes": 4}, ood=[])
    assert load_feature_set(widened, progress=False).num_classes == 4
    with pytest.raises(DatasetError, match="labels up to 2"):
        load_feature_set(
            widened.model_copy(update={"dataset": widened.dataset.model_copy(update={"num_classes": 2})})
        )


def test_ood_of_another_width_is_refused(tmp_path):
    own = own_features(tmp_path / "ood.parquet", np.zeros(10, int), width=5)
    with pytest.raises(DatasetError, match=r"OoD source features:.* gives 5 features"):
        load_feature_set(config(tmp_path, ood=[{"source": f"features:{own}"}]), progress=False)


def test_extract_features_returns_the_cache_files(tmp_path):
    paths = extract_features(config(tmp_path), progress=False)
    assert len(paths) == 2 and all(path.is_file() and path.parent == tmp_path / "cache" for path in paths)


def test_stratified_helpers():
    labels = np.repeat(np.arange(3), [10, 1, 5])
    held = stratified_holdout(labels, 0.3, [0, 1])
    assert np.bincount(labels[held], minlength=3).tolist() == [3, 0, 2]
    assert np.array_equal(held, stratified_holdout(labels, 0.3, [0, 1]))
    folds = stratified_folds(labels, 4, [0, 3])
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 4, 4]


def test_tfds_dataset_with_a_tfds_ood_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    experiment = config(
        tmp_path,
        dataset={"source": "tfds:rock_paper_scissors", "image_size": (8, 8)},
        ood=[{"source": "tfds:citrus_leaves"}],
    )
    with tfds.testing.mock_data(num_examples=6):
        features = load_feature_set(experiment, progress=False)
    fold = features.folds[0]
    assert features.num_classes == 3 and features.input_dim == 192
    assert (len(fold.train), len(fold.evaluation)) == (6, 6)
    assert fold.ood.shape == (6, 192)


def test_first_n_ood_is_one_set_for_every_fold_and_changes_the_key(tmp_path):
    randomly = load_feature_set(config(tmp_path, dataset={"folds": 3}), progress=False)
    first = load_feature_set(
        config(tmp_path, dataset={"folds": 3}, robustness={"ood_sampling": "first_n"}), progress=False
    )
    assert first.key != randomly.key
    assert all(np.array_equal(fold.ood, first.folds[0].ood) for fold in first.folds)
    assert not all(np.array_equal(fold.ood, randomly.folds[0].ood) for fold in randomly.folds)
    assert len(first.folds[0].ood) == len(first.folds[0].evaluation)
    # the same images whatever the seed: the first ones of each class
    reseeded = load_feature_set(
        config(tmp_path, dataset={"folds": 3, "split_seed": 5}, robustness={"ood_sampling": "first_n"}),
        progress=False,
    )
    assert np.array_equal(reseeded.folds[0].ood, first.folds[0].ood)
