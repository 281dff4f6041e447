"""dataset.resize: nearest gives the pixels Keras 2's loader gave (PIL nearest after RGB), everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from evoprune.shared.config import BackboneConfig, ExperimentConfig
from evoprune.workers.analysis import gradcam
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.features.assemble import extract_features
from evoprune.workers.features.backbones import BackboneError, build_backbone, nearest_indices, resize_batch
from evoprune.workers.features.datasets import DatasetError, _fit_image, open_image_source
from evoprune.workers.features.feature_cache import (
    FORMAT_VERSION,
    METADATA_KEY,
    cache_key,
    canonical_hash,
    source_features,
    weights_identity,
)
from tests.workers.generated_images import MIXED_MODES, write_mixed_mode_folder

PIXELS = BackboneConfig(name="pixels", batch_size=5)
ODD_SIZE = (23, 31)  # (height, width): smaller than some images, larger than others


def keras2_pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What Keras 2's `load_img(path, target_size=size)` gave: RGB conversion first, then PIL nearest."""
    with Image.open(path) as picture:
        rgb = picture.convert("RGB")
        return np.asarray(rgb.resize((size[1], size[0]), Image.Resampling.NEAREST))


def folder_in_reading_order(root: Path) -> list[Path]:
    return [path for folder in sorted(root.iterdir()) for path in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    return write_mixed_mode_folder(tmp_path_factory.mktemp("mixed") / "images")


def test_the_folder_holds_every_mode_at_odd_sizes(mixed_folder):
    modes, sizes = set(), set()
    for path in folder_in_reading_order(mixed_folder):
        with Image.open(path) as picture:
            modes.add(picture.mode)
            sizes.add(picture.size)
    assert modes == set(MIXED_MODES)
    assert all(width % 2 and height % 2 for width, height in sizes)
    assert any(w < ODD_SIZE[1] for w, _ in sizes) and any(w > ODD_SIZE[1] for w, _ in sizes)


def test_nearest_pixels_features_equal_keras2_loaded_images(mixed_folder, tmp_path):
    table, _ = source_features(
        f"folder:{mixed_folder}",
        backbone=PIXELS,
        image_size=ODD_SIZE,
        cache_dir=tmp_path,
        progress=False,
        resize="nearest",
    )
    paths = folder_in_reading_order(mixed_folder)
    expected = np.stack([keras2_pixels(path, ODD_SIZE) for path in paths]).reshape(len(paths), -1)
    assert table.features.shape == expected.shape
    assert np.array_equal(table.features, expected.astype(np.float32))
    # the test can tell the two choices apart: bilinear gives other pixels on these images
    bilinear, _ = source_features(
        f"folder:{mixed_folder}", backbone=PIXELS, image_size=ODD_SIZE, cache_dir=tmp_path, progress=False
    )
    assert not np.array_equal(bilinear.features, table.features)


def test_decoded_arrays_resize_as_the_loader_would(mixed_folder):
    """TFDS images arrive as arrays of 1, 3 or 4 channels: nearest, then the backbone's grey-to-RGB and
    drop-alpha, equals converting to RGB first."""
    for path in folder_in_reading_order(mixed_folder):
        with Image.open(path) as picture:
            if picture.mode == "P":
                continue  # a palette image decodes to indices; TFDS never hands those over
            decoded = np.asarray(picture)
        fitted = _fit_image(decoded, ODD_SIZE, Image.Resampling.NEAREST, str(path))
        rgb = np.repeat(fitted, 3, axis=-1) if fitted.shape[-1] == 1 else fitted[..., :3]
        assert np.array_equal(rgb, keras2_pixels(path, ODD_SIZE)), path


def test_sklearn_sources_use_the_choice():
    nearest = open_image_source("sklearn:digits", image_size=(13, 11), resize="nearest")
    images = next(nearest.chunks(50)).images[..., 0]
    from sklearn.datasets import load_digits

    originals = load_digits().images[:50].astype(np.float32)
    expected = [np.asarray(Image.fromarray(d).resize((11, 13), Image.Resampling.NEAREST)) for d in originals]
    assert np.array_equal(images, np.stack(expected))
    # nearest only picks existing values: the digits stay on their 0..16 integer levels
    assert np.array_equal(images, np.rint(images))


def test_an_unknown_choice_is_refused_by_name(mixed_folder):
    with pytest.raises(DatasetError, match=r"dataset\.resize is 'cubic'"):
        open_image_source(f"folder:{mixed_folder}", resize="cubic")
    with pytest.raises(BackboneError, match=r"dataset\.resize is 'cubic'"):
        build_backbone("pixels", None, (8, 8), "cubic")


def test_cache_key_names_the_choice_only_off_the_default():
    fingerprint = {"kind": "sklearn", "name": "digits", "sklearn": "1.0"}
    backbone = BackboneConfig(name="resnet50")
    # the key as it was computed before dataset.resize existed: caches written then must stay valid
    before = canonical_hash(
        {
            "format": FORMAT_VERSION,
            "dataset": fingerprint,
            "backbone": "resnet50",
            "weights": weights_identity(backbone),
            "image_size": [32, 32],
        }
    )
    assert cache_key(fingerprint, backbone, (32, 32)) == before
    assert cache_key(fingerprint, backbone, (32, 32), "bilinear") == before
    assert cache_key(fingerprint, backbone, (32, 32), "nearest") != before


def test_each_choice_has_its_own_cache_entry(mixed_folder, tmp_path):
    common = {"backbone": PIXELS, "image_size": ODD_SIZE, "cache_dir": tmp_path, "progress": False}
    _, bilinear = source_features(f"folder:{mixed_folder}", **common)
    _, nearest = source_features(f"folder:{mixed_folder}", resize="nearest", **common)
    assert bilinear != nearest and sorted(tmp_path.iterdir()) == sorted([bilinear, nearest])
    recorded = json.loads(pq.read_schema(nearest).metadata[METADATA_KEY])
    assert recorded["resize"] == "nearest"


def test_reference_protocol_resizes_dataset_and_ood_by_nearest(mixed_folder, tmp_path):
    config = ExperimentConfig.model_validate(
        {
            "protocol": "reference",
            "dataset": {"source": f"folder:{mixed_folder}", "image_size": list(ODD_SIZE)},
            "ood": [{"source": f"folder:{mixed_folder}"}],
            "backbone": {"name": "pixels"},
            "cache_dir": str(tmp_path),
        }
    )
    assert config.dataset.resize == "nearest"
    paths = extract_features(config, progress=False)
    source = open_image_source(f"folder:{mixed_folder}", image_size=ODD_SIZE)
    assert paths[0].stem == cache_key(source.fingerprint, config.backbone, ODD_SIZE, "nearest")
    expected = np.stack([keras2_pixels(p, ODD_SIZE) for p in folder_in_reading_order(mixed_folder)])
    for path in paths:
        features = np.stack(pq.read_table(path).column("features").to_numpy(zero_copy_only=False))
        assert np.array_equal(features, expected.reshape(len(expected), -1).astype(np.float32)), path


@pytest.mark.parametrize(
    "sizes", [((45, 37), (32, 32)), ((7, 300), (33, 299)), ((97, 13), (64, 64)), ((256, 320), (224, 224))]
)
def test_batch_nearest_equals_pil_nearest(sizes):
    (height, width), target = sizes
    images = np.random.default_rng(height).integers(0, 256, size=(3, height, width, 3), dtype=np.uint8)
    resized = resize_batch(images.astype(np.float32), target, "nearest")
    expected = [np.asarray(Image.fromarray(i).resize(target[::-1], Image.Resampling.NEAREST)) for i in images]
    assert resized.dtype == np.float32
    assert np.array_equal(resized, np.stack(expected).astype(np.float32))


def test_keras_nearest_is_not_pil_nearest():
    """Why the backbone's nearest resize gathers PIL's own indices instead of calling keras.ops.image.resize:
    Keras picks other source pixels for some ratios, e.g. 25 of 224 rows from 256 (a 256-pixel image into a
    224-pixel network)."""
    import keras

    column = np.arange(256, dtype=np.float32).reshape(1, 256, 1, 1)
    by_keras = keras.ops.convert_to_numpy(keras.ops.image.resize(column, (224, 1), interpolation="nearest"))
    assert np.count_nonzero(by_keras.reshape(-1).astype(np.int64) != nearest_indices(256, 224)) == 25


def test_bilinear_batch_resize_is_unchanged():
    import keras

    images = np.random.default_rng(1).uniform(0, 255, size=(2, 45, 37, 3)).astype(np.float32)
    before = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (32, 32)))
    assert np.array_equal(resize_batch(images, (32, 32), "bilinear"), before)


def test_cnn_backbone_resizes_its_input_by_the_choice():
    images = np.random.default_rng(5).integers(0, 256, size=(3, 45, 37, 3), dtype=np.uint8)
    pil_nearest = np.stack(
        [np.asarray(Image.fromarray(i).resize((32, 32), Image.Resampling.NEAREST)) for i in images]
    )
    nearest = build_backbone("mobilenet", None, (32, 32), "nearest")
    assert nearest.resize == "nearest"
    features = nearest.extract(images, pixel_max=255)
    # images already at the input size are not resized: the resize alone explains any difference
    assert np.array_equal(features, nearest.extract(pil_nearest, pixel_max=255))
    assert np.array_equal(
        nearest.model_inputs(images, 255.0), nearest.model_inputs(pil_nearest, 255.0)
    )
    bilinear = build_backbone("mobilenet", None, (32, 32))
    assert not np.array_equal(bilinear.extract(images, pixel_max=255), features)


def test_heatmaps_and_exports_read_the_pixels_the_cache_was_built_from(mixed_folder):
    config = ExperimentConfig.model_validate(
        {
            "dataset": {
                "source": f"folder:{mixed_folder}",
                "image_size": list(ODD_SIZE),
                "resize": "nearest",
            },
            "backbone": {"name": "pixels"},
        }
    )
    paths = folder_in_reading_order(mixed_folder)
    expected = np.stack([keras2_pixels(path, ODD_SIZE) for path in paths])
    samples = gradcam.sample_images(config, 1)  # one image: the first of the first class
    assert np.array_equal(samples.images[0], expected[0])
    assert gradcam.load_backbone(config, samples).resize == "nearest"
    rows = np.array([len(paths) - 1, 0, 5])
    assert np.array_equal(raw_inputs(config, rows).values, expected[rows])
