"""Backbones: the pixel extractor, the keras.applications registry, and the three ways to get weights."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evoprune.workers.features.backbones import BackboneError, backbone_names, build_backbone, keras_models

REPOSITORY = Path(__file__).resolve().parents[3]


def test_pixels_flattens_the_values_as_they_are():
    images = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1) % 17
    backbone = build_backbone("PIXELS", "imagenet", (8, 8))
    features = backbone.extract(images, pixel_max=16)
    assert features.dtype == np.float32
    assert np.array_equal(features, images.reshape(2, 64))


def test_registry_is_found_by_introspection():
    models = keras_models()
    for name in ("resnet50", "densenet121", "vgg19", "mobilenet", "efficientnetb0", "mobilenetv3small"):
        constructor, preprocess = models[name]
        assert constructor.__name__.lower() == name
        assert callable(preprocess)
    assert "pixels" in backbone_names()


def test_unknown_name_lists_valid_ones():
    with pytest.raises(BackboneError, match=r"unknown backbone 'resnet5'.*resnet50.*densenet121"):
        build_backbone("resnet5", None, (32, 32))


def test_too_small_images_are_refused():
    with pytest.raises(BackboneError, match=r"at least 32×32.*dataset\.image_size"):
        build_backbone("mobilenet", None, (8, 8))


def test_missing_weights_file():
    with pytest.raises(BackboneError, match="does not exist"):
        build_backbone("mobilenet", "/nonexistent/weights.h5", (32, 32))


def test_gray_digits_through_a_cnn_are_stacked_and_resized():
    backbone = build_backbone("MobileNet", None, (32, 32))
    digits = np.random.default_rng(0).integers(0, 17, size=(5, 8, 8, 1)).astype(np.float32)
    features = backbone.extract(digits, pixel_max=16)
    assert backbone.output_dim == 1024
    assert features.shape == (5, 1024) and features.dtype == np.float32
    # Random weights are seeded: a second build gives the same features.
    again = build_backbone("mobilenet", None, (32, 32)).extract(digits, pixel_max=16)
    np.testing.assert_allclose(features, again, rtol=1e-5, atol=1e-6)


def test_resnet50_gives_2048_features():
    backbone = build_backbone("resnet50", None, (32, 32))
    images = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)
    features = backbone.extract(images, pixel_max=255)
    assert features.shape == (3, 2048)
    assert np.all(np.isfinite(features))


def test_weights_from_a_file(tmp_path):
    import keras

    reference = keras.applications.MobileNet(
        include_top=False, pooling="avg", weights=None, input_shape=(32, 32, 3), alpha=1.0
    )
    rng = np.random.default_rng(2)
    reference.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in reference.get_weights()])
    weights = tmp_path / "mine.weights.h5"
    reference.save_weights(weights)
    images = rng.integers(0, 256, size=(4, 32, 32, 3)).astype(np.float32)
    preprocess = keras_models()["mobilenet"][1]
    expected = keras.ops.convert_to_numpy(reference(preprocess(images.copy()), training=False))
    features = build_backbone("mobilenet", str(weights), (32, 32)).extract(images, pixel_max=255)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


IMAGENET_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import h5py, keras, numpy as np
    from keras.src.legacy.saving import legacy_h5_format
    from evoprune.workers.features.backbones import build_backbone, keras_models

    models = Path(os.environ["KERAS_HOME"]) / "models"
    models.mkdir(parents=True)
    source = keras.applications.MobileNet(
        include_top=False, pooling="avg", weights=None, input_shape=(32, 32, 3)
    )
    rng = np.random.default_rng(3)
    source.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in source.get_weights()])
    # The name Keras asks for when weights="imagenet"; it has no file hash, so any file of that name serves.
    with h5py.File(models / "mobilenet_1_0_224_tf_no_top.h5", "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    images = rng.integers(0, 256, size=(4, 32, 32, 3)).astype(np.float32)
    preprocess = keras_models()["mobilenet"][1]
    expected = keras.ops.convert_to_numpy(source(preprocess(images.copy()), training=False))
    features = build_backbone("mobilenet", "imagenet", (32, 32)).extract(images, pixel_max=255)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    print("IMAGENET-PATH-OK", float(np.abs(features).sum()))
    """
)


def test_imagenet_weights_come_from_the_keras_cache(tmp_path):
    # Keras reads KERAS_HOME when it is imported, so the check runs in a fresh interpreter.
    environment = os.environ | {
        "KERAS_HOME": str(tmp_path / "keras"),
        "PYTHONPATH": str(REPOSITORY),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", IMAGENET_SCRIPT],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMAGENET-PATH-OK" in result.stdout


def test_images_of_another_size_are_resized_to_the_input():
    backbone = build_backbone("mobilenet", None, (32, 32))
    small = np.random.default_rng(4).integers(0, 256, size=(2, 16, 16, 3)).astype(np.uint8)
    assert backbone.extract(small, pixel_max=255).shape == (2, 1024)
