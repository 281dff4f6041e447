"""`evoprune run --dataset-csv … --ga-csv … --run N`: the reference's command line, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from evoprune.api.cli.main import build_parser, main
from evoprune.api.cli.run import run_command
from evoprune.coordinator.assembly import DEFAULT_BACKEND, Backend, RunSettings
from evoprune.coordinator.evaluator_interface import Evaluator
from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.feature_set import FeatureSet

SIDE_PX = 8
# population 6, feature selection over the 8×8×3 pixels, one hidden layer of 16, 10 evaluations
GA_LINE = f"6,first,{SIDE_PX * SIDE_PX * 3},16,-1,10,0,1,1,0\n"


def _images(folder: Path, per_class: int, seed: int, shift: float) -> None:
    """Two classes that differ in brightness, so that a small head can tell them apart.

    Dim images: the `pixels` extractor passes raw 0-255 values, and on bright ones the first logits are so
    large that Keras 2's clipped cross-entropy (`protocol: reference`) gives the wrongly classified samples
    no gradient at all, so no mask learns (measured: best accuracy 0.67, against 0.83 with the exact loss).
    """
    generator = np.random.default_rng(seed)
    for label, name in enumerate(("dark", "light")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            base = 4 + 8 * label + shift
            pixels = np.clip(generator.normal(base, 2, (SIDE_PX, SIDE_PX, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index}.png")


def _reference_files(root: Path) -> tuple[Path, Path]:
    """A tiny dataset and two OoD sets, described by CSV files in the reference's format."""
    _images(root / "data" / "tiny" / "train", per_class=6, seed=0, shift=0)
    _images(root / "data" / "tiny" / "test", per_class=3, seed=1, shift=0)
    _images(root / "dataood" / "noise", per_class=4, seed=2, shift=4)
    _images(root / "dataood" / "other", per_class=4, seed=3, shift=-3)
    configs = root / "configs"
    configs.mkdir()
    dataset = configs / "configDatasetTiny.csv"
    dataset.write_text(f"TINY,{root}/data/tiny/train,{root}/data/tiny/test/,1,{SIDE_PX},{SIDE_PX},2\n")
    # its own OoD file describes TINY for the other datasets' experiments and is not read here
    (configs / "configDatasetTinyOOD.csv").write_text(f"TINY-OOD,{root}/data/tiny/train/,-,1,8,8,2\n")
    (configs / "configDatasetNoiseOOD.csv").write_text(f"NOISE-OOD,{root}/dataood/noise/,-,1,8,8,2\n")
    (configs / "configDatasetOtherOOD.csv").write_text(f"OTHER-OOD,{root}/dataood/other/,-,1,8,8,2\n")
    ga = configs / "configGAFS.csv"
    ga.write_text(GA_LINE)
    return dataset, ga


def _check_results(out: Path, root: Path) -> None:
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "TINY-run2"
    assert config["dataset"]["source"] == f"folder:{root}/data/tiny"
    assert config["dataset"]["image_size"] == [SIDE_PX, SIDE_PX]
    assert [ood["name"] for ood in config["ood"]] == ["NOISE-OOD", "OTHER-OOD"]
    assert config["backbone"]["name"] == "pixels"
    assert config["head"] == {"mode": "features", "layers": [16], "masked": [0], "hidden_bias": False}
    assert (config["search"]["population_size"], config["search"]["max_evaluations"]) == (6, 10)
    assert (config["search"]["runs"], config["search"]["seed"]) == (1, 2)

    evaluations = pq.read_table(out / "evaluations.parquet").to_pylist()
    assert len(evaluations) == 10
    assert {row["run"] for row in evaluations} == {0}
    assert all(row["mask_length"] == SIDE_PX * SIDE_PX * 3 for row in evaluations)
    for row in evaluations:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["auroc"] <= 1.0
        assert 0.0 <= row["active_fraction"] <= 1.0


@pytest.fixture
def reference_argv(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    dataset, ga = _reference_files(tmp_path)
    return ["run", "--dataset-csv", str(dataset), "--ga-csv", str(ga), "--run", "2", "--extractor", "pixels"]


def _short_training_evaluator(
    feature_set: FeatureSet, config: ExperimentConfig, settings: RunSettings
) -> Evaluator:
    """The real evaluator, trained for 5 epochs instead of the reference's 600 (the quick tier's budget)."""
    shorter = config.model_copy(update={"training": config.training.model_copy(update={"max_epochs": 5})})
    return DEFAULT_BACKEND.make_evaluator(feature_set, shorter, settings)


def test_reference_command_line_with_short_training(reference_argv, tmp_path, capsys):
    backend = Backend(load_features=DEFAULT_BACKEND.load_features, make_evaluator=_short_training_evaluator)
    out = tmp_path / "results"
    args = build_parser().parse_args([*reference_argv, "--workers", "0", "--out", str(out)])
    assert run_command(args, backend) == 0, capsys.readouterr().err
    _check_results(out, tmp_path)


@pytest.mark.slow
def test_reference_command_line_runs_end_to_end(reference_argv, tmp_path, capsys):
    out = tmp_path / "results"
    status = main([*reference_argv, "--workers", "0", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(out)
    _check_results(out, tmp_path)
    evaluations = pq.read_table(out / "evaluations.parquet").to_pylist()
    # two brightness classes: the reference's 600-epoch protocol separates them
    assert max(row["accuracy"] for row in evaluations) >= 0.8
