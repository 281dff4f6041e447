import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from evoprune.coordinator.analysis.analyze import analyze
from evoprune.coordinator.results.layout import ANALYSIS_DIR
from evoprune.shared.config import parse_config
from tests.coordinator.analysis.fixtures import run_experiment
from tests.workers.generated_images import CLASSES, shapes_config_data

SAMPLES = 3


def analysed_shapes(base, out, search, **head):
    config = parse_config(shapes_config_data(base, search, **head))
    features = run_experiment(config, out)
    return analyze(out, samples=SAMPLES, feature_set=features)


def heatmap_grid(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format, image.size, np.asarray(image.convert("RGB"))


def check_heatmaps(out, index, columns):
    heatmaps = index["heatmaps"]
    assert heatmaps["skipped"] is None
    assert heatmaps["method"] == "grad-cam" and heatmaps["layer"] == "out_relu"
    assert heatmaps["images"] == SAMPLES and heatmaps["split"] == "test"
    assert heatmaps["columns"] == columns
    image_format, (width, height), pixels = heatmap_grid(out / ANALYSIS_DIR / "heatmaps.png")
    assert image_format == "PNG"
    # one column per neuron plus the image column, one row per sample image
    assert width > 1.5 * height and width >= 900 and height >= 300
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    assert ((red - blue) > 80).mean() > 0.01, "no heatmap colours drawn"


@pytest.mark.slow
def test_cnn_features_mode_grad_cam_of_the_top_channels(tmp_path_factory):
    # 1280-bit masks train at many padded widths, each compiled once: minutes on two cores
    out = tmp_path_factory.mktemp("cnn") / "features"
    index = analysed_shapes(tmp_path_factory.getbasetemp(), out, {"population_size": 4, "max_evaluations": 6})
    assert index["reproduced"]["exact"] == index["reproduced"]["models"] == index["front_size"]
    importance = pq.read_table(out / ANALYSIS_DIR / "importance.parquet").to_pylist()
    assert len(importance) == index["mask_length"] == 1280
    check_heatmaps(out, index, [entry["label"] for entry in index["top"]])
    assert all(label.startswith("feature ") for label in index["heatmaps"]["columns"])
    listed = json.loads((out / ANALYSIS_DIR / "analysis.json").read_text())["artifacts"]
    assert "heatmaps.png" in {entry["name"] for entry in listed}
    assert "pixel_importance.png" not in {entry["name"] for entry in listed}
    assert len(CLASSES) == SAMPLES


def test_cnn_neurons_mode_grad_cam_of_hidden_units(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "neurons"
    search = {"population_size": 4, "max_evaluations": 6}
    index = analysed_shapes(tmp_path_factory.getbasetemp(), out, search, mode="neurons")
    assert index["mask_length"] == 32
    assert index["reproduced"]["exact"] == index["reproduced"]["models"]
    labels = [entry["label"] for entry in index["top"]]
    assert all(label.startswith("h1 unit ") for label in labels)
    check_heatmaps(out, index, labels)
