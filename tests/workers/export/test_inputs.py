import numpy as np
import pytest
from sklearn.datasets import load_digits

from evoprune.shared.config import parse_config
from evoprune.workers.export.inputs import FEATURES, IMAGES, raw_inputs
from evoprune.workers.features.assemble import fitness_rows, load_feature_set
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_cache import FeatureTable, write_feature_file


def digits_features_file(path, folds=None):
    digits = load_digits()
    count = len(digits.target)
    table = FeatureTable(
        digits.data.astype(np.float32),
        digits.target.astype(np.int64),
        np.array(["train"] * count),
        folds,
        (),
        "",
    )
    write_feature_file(path, table, {})
    return path


def test_the_rows_of_the_fitness_split_are_the_ones_the_search_scored_on_images(tmp_path):
    config = parse_config(
        {"backbone": {"name": "pixels", "weights": None}, "ood": [], "cache_dir": str(tmp_path / "cache")}
    )
    fold = load_feature_set(config, progress=False).folds[0]
    samples = raw_inputs(config, fitness_rows(config, 0))
    assert samples.kind == IMAGES and samples.sample_shape == (8, 8, 1) and samples.pixel_max == 16.0
    # the pixels backbone flattens the raw values: the features are the images
    np.testing.assert_array_equal(samples.values.reshape(len(samples.values), -1), fold.evaluation.features)
    np.testing.assert_array_equal(samples.labels, fold.evaluation.labels)
    with pytest.raises(DatasetError, match="has 1 fold"):
        fitness_rows(config, 1)


@pytest.mark.parametrize("fitness_split", ["test", "validation"])
def test_every_fold_of_a_features_source(tmp_path, fitness_split):
    source = digits_features_file(tmp_path / "digits.parquet")
    config = parse_config(
        {
            "dataset": {"source": f"features:{source}", "folds": 3},
            "ood": [],
            "fitness_split": fitness_split,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    folds = load_feature_set(config, progress=False).folds
    for index, fold in enumerate(folds):
        samples = raw_inputs(config, fitness_rows(config, index))
        assert samples.kind == FEATURES and samples.pixel_max is None
        np.testing.assert_array_equal(samples.values, fold.evaluation.features)
        np.testing.assert_array_equal(samples.labels, fold.evaluation.labels)
