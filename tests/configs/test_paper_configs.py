"""The six paper configs in configs/: they validate, state the paper's facts, and the TFDS ones load."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evoprune.shared.config import (
    EarlyStoppingConfig,
    ExperimentConfig,
    RobustnessConfig,
    TrainingConfig,
    load_config,
    parse_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# name: (source, image size, classes, folds, reported accuracy / active fraction / AUROC)
PAPER = {
    "srsmas": ("folder:{data}/srsmas", (299, 299), 14, 5, (0.879, 0.275, 0.978)),
    "leaves": ("tfds:citrus_leaves", (256, 256), 4, 5, (0.941, 0.328, 0.904)),
    "painting": ("folder:{data}/painting", (256, 256), 5, None, (0.954, 0.330, 0.982)),
    "rps": ("tfds:rock_paper_scissors", (300, 300), 3, None, (1.0, 0.23, 0.90)),
    "cataract": ("folder:{data}/cataract", (256, 256), 4, None, (0.760, 0.349, 0.447)),
    "plants": ("folder:{data}/plants", (100, 100), 27, None, (0.479, 0.424, 0.735)),
}
REPORTED = re.compile(r"accuracy ([\d.]+), active fraction ([\d.]+), AUROC ([\d.]+)")


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EVOPRUNE_DATA", str(tmp_path))
    return tmp_path


def test_configs_folder_holds_the_demo_and_the_six_datasets():
    assert sorted(path.stem for path in CONFIGS.glob("*.yaml")) == sorted([*PAPER, "demo", "rps-tfds"])


def test_rps_tfds_is_rps_with_only_tfds_sources(data_root):
    # the variant a machine with internet runs unchanged: everything but the OoD set equals configs/rps.yaml
    paper, tfds_only = load_config(CONFIGS / "rps.yaml"), load_config(CONFIGS / "rps-tfds.yaml")
    assert [ood.source for ood in tfds_only.ood] == ["tfds:citrus_leaves"]
    assert all(source.startswith("tfds:") for source in [tfds_only.dataset.source])
    assert tfds_only.model_copy(update={"name": "rps", "ood": paper.ood}) == paper


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_config_validates(path, data_root):
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert "${" not in config.dataset.source and all("${" not in ood.source for ood in config.ood)


@pytest.mark.parametrize("name", PAPER)
def test_paper_facts(name, data_root):
    config = load_config(CONFIGS / f"{name}.yaml")
    source, size, classes, folds, _ = PAPER[name]
    assert config.name == name
    assert config.dataset.source == source.format(data=data_root)
    assert config.dataset.image_size == size
    assert config.dataset.num_classes == classes
    assert config.dataset.folds == folds
    # the OoD set is the other five datasets, in the reference's order
    others = [PAPER[other][0].format(data=data_root) for other in PAPER if other != name]
    assert [ood.source for ood in config.ood] == others
    assert [ood.name for ood in config.ood] == [other.upper() for other in PAPER if other != name]


@pytest.mark.parametrize("name", PAPER)
def test_paper_protocol_and_search(name, data_root):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert (config.backbone.name, config.backbone.weights) == ("resnet50", "imagenet")
    assert (config.head.mode, config.head.layers, config.head.masked) == ("features", (512,), (0,))
    assert config.head.hidden_bias is False
    assert config.training == TrainingConfig(
        learning_rate=1e-3,
        momentum=0.9,
        nesterov=True,
        decay=1e-6,
        batch_size=32,
        max_epochs=600,
        early_stopping=EarlyStoppingConfig(
            min_delta=1e-5, patience=10, restore_best_weights="when_stopped", decision="keras2_float64"
        ),
        seed=0,
        loss="keras2_clipped",
    )
    # protocol: reference selects the reference's resize, estimator, score precision, OoD sample, restore
    # rule, stopping decision, loss and NSGA-II bookkeeping
    assert config.protocol == "reference"
    assert config.dataset.resize == "nearest"
    assert config.robustness == RobustnessConfig(
        temperature=1000.0, auroc_estimator="reference", ood_sampling="first_n", score_precision="float32"
    )
    assert config.search.bookkeeping == "jmetalpy"
    assert config.fitness_split == "test"
    search = config.search
    assert (search.population_size, search.max_evaluations, search.runs, search.seed) == (30, 200, 10, 0)
    assert (search.offspring_per_step, search.asynchronous, search.mutation_probability) == (2, False, None)


def test_the_demo_and_the_defaults_keep_the_exact_auroc_and_random_ood(data_root):
    for config in (load_config(CONFIGS / "demo.yaml"), parse_config({})):
        assert config.protocol == "default"
        assert (config.robustness.auroc_estimator, config.robustness.ood_sampling) == ("exact", "random")
        assert config.training.early_stopping.restore_best_weights == "always"
        assert (config.training.loss, config.training.early_stopping.decision) == ("exact", "float32")
        assert (config.dataset.resize, config.robustness.score_precision) == ("bilinear", "float64")
        assert config.search.bookkeeping == "deap"
    assert load_config(CONFIGS / "rps-tfds.yaml").protocol == "reference"


@pytest.mark.parametrize("name", PAPER)
def test_header_states_the_reported_result(name):
    header = "".join(
        line for line in (CONFIGS / f"{name}.yaml").read_text().splitlines() if line.startswith("#")
    )
    match = REPORTED.search(header)
    assert match, f"{name}.yaml: no 'accuracy …, active fraction …, AUROC …' line in the header"
    assert tuple(float(value) for value in match.groups()) == PAPER[name][4]


def test_folder_configs_name_the_unset_data_root(monkeypatch):
    monkeypatch.delenv("EVOPRUNE_DATA", raising=False)
    with pytest.raises(ValueError, match=r"dataset\.source: environment variable EVOPRUNE_DATA is not set"):
        load_config(CONFIGS / "srsmas.yaml")


def test_tfds_can_prepare_a_download():
    # TFDS imports importlib_resources lazily when it prepares a download but declares it only for
    # Python < 3.9 (tensorflow/datasets#11212): without it, configs/rps.yaml fails on a fresh machine
    dataset_builder = pytest.importorskip("tensorflow_datasets.core.dataset_builder")
    assert dataset_builder.importlib_resources.abc.Traversable is not None


def _images(folder: Path, classes: int, per_class: int, seed: int) -> None:
    generator = np.random.default_rng(seed)
    for label in range(classes):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = generator.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"class{label}" / f"{index}.png")


def _ood_folders(root: Path) -> None:
    """Tiny stand-ins for the four folder datasets, each in its documented layout."""
    for partition in range(5):
        _images(root / "srsmas" / f"partition{partition}", classes=2, per_class=1, seed=partition)
    for seed, name in enumerate(("painting", "plants", "cataract")):
        _images(root / name / "train", classes=2, per_class=1, seed=10 + seed)
        _images(root / name / "test", classes=2, per_class=1, seed=20 + seed)


def _offline(config: ExperimentConfig, cache: Path) -> ExperimentConfig:
    """The same config with random backbone weights and a private cache: nothing is downloaded."""
    data = config.model_dump(mode="json")
    data["backbone"]["weights"] = None
    data["cache_dir"] = str(cache)
    return parse_config(data)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "folds"), [("rps", 1), ("leaves", 5)])
def test_tfds_configs_load_with_mock_data(name, folds, data_root):
    tfds = pytest.importorskip("tensorflow_datasets")
    from evoprune.workers.features.assemble import load_feature_set

    _ood_folders(data_root)
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.backbone.weights == "imagenet", "the config itself downloads real weights"
    with tfds.testing.mock_data(num_examples=5):
        features = load_feature_set(_offline(config, data_root / "cache"), progress=False)
    assert features.input_dim == 2048
    assert features.num_classes == PAPER[name][2]
    assert len(features.folds) == folds
    for fold in features.folds:
        # the reference's first_n rule: one OoD set for every fold, sized by the first fold's split but not
        # exactly that size (every class after a source's first gives an image even when its share is 0)
        assert len(fold.evaluation) > 0 and len(fold.ood) > 0
        assert np.array_equal(fold.ood, features.folds[0].ood)
        assert np.all(np.isfinite(fold.ood))
