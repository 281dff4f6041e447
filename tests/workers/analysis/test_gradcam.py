import keras
import numpy as np
import pytest

from evoprune.shared.config import parse_config
from evoprune.workers.analysis import gradcam
from evoprune.workers.features.assemble import load_feature_set
from evoprune.workers.features.backbones import Backbone
from tests.workers.generated_images import CLASSES, shapes_config_data

TEST_PER_CLASS = 8  # generated_images.write_shapes_dataset's default


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shapes experiment's config, three sample images and the backbone built as the cache built it."""
    config = parse_config(shapes_config_data(tmp_path_factory.getbasetemp()))
    samples = gradcam.sample_images(config, 3)
    backbone = gradcam.load_backbone(config, samples)
    return config, samples, backbone


def conv_activations(backbone, samples):
    layer = gradcam.last_conv_layer(backbone.model)
    probe = keras.Model(backbone.model.inputs[0], layer.output)
    inputs = backbone.model_inputs(samples.images, samples.pixel_max)
    return np.asarray(keras.ops.convert_to_numpy(probe(inputs, training=False)), dtype=np.float64)


def upsample_and_normalise(maps, size):
    """(n, h, w) → (n, H, W) bilinear, each map scaled to peak 1 (the definition gradcam() follows)."""
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(maps[..., None].astype(np.float32), size))
    resized = np.asarray(resized)[..., 0]
    peaks = resized.max(axis=(1, 2), keepdims=True)
    return np.where(peaks > 0, resized / np.where(peaks > 0, peaks, 1), 0)


def test_samples_come_from_the_test_split_one_class_after_another(shapes):
    config, samples, _ = shapes
    assert samples.split == "test"
    assert samples.images.shape == (3, 96, 96, 3)
    assert samples.labels.tolist() == [0, 1, 2]
    assert samples.class_names == CLASSES
    more = gradcam.sample_images(config, 5)
    assert more.labels.tolist() == [0, 1, 2, 0, 1]


def test_the_probe_sees_the_cached_features(shapes):
    config, samples, backbone = shapes
    features = load_feature_set(config, progress=False)
    # the test split is read class by class, so each class's first test image is every 8th row
    cached = features.folds[0].evaluation.features[[0, TEST_PER_CLASS, 2 * TEST_PER_CLASS]]
    inputs = backbone.model_inputs(samples.images, samples.pixel_max)
    pooled = np.asarray(keras.ops.convert_to_numpy(backbone.model(inputs, training=False)))
    np.testing.assert_allclose(pooled, cached, rtol=1e-4, atol=1e-5)
    assert gradcam.last_conv_layer(backbone.model).name == "out_relu"


def test_gradcam_of_a_pooled_channel_is_that_channels_map(shapes):
    _, samples, backbone = shapes
    channels = [3, 100, 1279]
    maps = gradcam.gradcam(backbone, samples, [gradcam.feature_target(k) for k in channels])
    assert maps.shape == (3, 3, 96, 96)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    activations = conv_activations(backbone, samples)
    for column, channel in enumerate(channels):
        # d mean(A_k) / dA_c = δ_kc / (h·w): the weighted sum is A_k itself, up to the normalisation
        expected = upsample_and_normalise(np.maximum(activations[..., channel], 0), (96, 96))
        np.testing.assert_allclose(maps[:, column], expected, atol=1e-5)


def test_gradcam_of_a_hidden_unit_weights_channels_by_its_kernel(shapes):
    _, samples, backbone = shapes
    rng = np.random.default_rng(0)
    kept = (np.arange(1280), np.array([1, 4, 7, 9]))
    params = (rng.normal(size=(1280, 4)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32))
    params = (*params, np.zeros(3, np.float32))
    target = gradcam.unit_target(params, kept, False, position=1, unit=7)
    maps = gradcam.gradcam(backbone, samples, [target])
    activations = conv_activations(backbone, samples)
    # the unit's pre-activation is mean(A) @ W[:, 2]: every channel's weight is W[c, 2] / (h·w)
    weighted = np.maximum(np.einsum("nhwc,c->nhw", activations, params[0][:, 2].astype(np.float64)), 0)
    np.testing.assert_allclose(maps[:, 0], upsample_and_normalise(weighted, (96, 96)), atol=1e-4)
    with pytest.raises(gradcam.HeatmapError, match="does not keep unit 5"):
        gradcam.unit_target(params, kept, False, position=1, unit=5)


def test_extraction_and_heatmaps_prepare_images_by_one_function(shapes, monkeypatch):
    _, samples, backbone = shapes
    prepared = []
    original = Backbone.model_inputs

    def recording(self, images, pixel_max):
        inputs = original(self, images, pixel_max)
        prepared.append((self.name, inputs))
        return inputs

    monkeypatch.setattr(Backbone, "model_inputs", recording)
    features = backbone.extract(samples.images, samples.pixel_max)
    gradcam.gradcam(backbone, samples, [gradcam.feature_target(0)])
    gradcam.pixel_saliency(samples, [gradcam.feature_target(0)])
    assert [name for name, _ in prepared] == [backbone.name, backbone.name, "pixels"]
    # extraction and Grad-CAM fed the model the same batch, and extraction's features are the model's output
    np.testing.assert_array_equal(prepared[0][1], prepared[1][1])
    pooled = keras.ops.convert_to_numpy(backbone.model(prepared[0][1], training=False))
    np.testing.assert_array_equal(features, pooled)


def test_pixel_saliency_is_gradient_times_input(tmp_path):
    config = parse_config(
        {"dataset": {"source": "sklearn:digits"}, "backbone": {"name": "pixels"}, "cache_dir": str(tmp_path)}
    )
    assert gradcam.is_pixels(config)
    samples = gradcam.sample_images(config, 4)
    assert samples.images.shape == (4, 8, 8, 1) and samples.labels.tolist() == [0, 1, 2, 3]
    rng = np.random.default_rng(1)
    kept = (np.arange(64), np.arange(6))
    params = (rng.normal(size=(64, 6)).astype(np.float32), rng.normal(size=(6, 10)).astype(np.float32))
    maps = gradcam.pixel_saliency(samples, [gradcam.unit_target(params, kept, False, 1, 2)])
    flat = samples.images.reshape(4, 64).astype(np.float64)
    relevance = np.maximum(flat * params[0][:, 2], 0).reshape(4, 8, 8)
    peaks = relevance.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps[:, 0], relevance / peaks, atol=1e-6)


def test_pixel_map_lays_bits_out_as_the_image():
    values = np.arange(2 * 3 * 2, dtype=float)
    np.testing.assert_array_equal(gradcam.pixel_map(values, (2, 3, 2)), values.reshape(2, 3, 2).mean(-1))
    with pytest.raises(gradcam.HeatmapError, match="12 bits"):
        gradcam.pixel_map(values, (3, 3, 1))


def test_features_sources_have_no_images(tmp_path):
    config = parse_config({"dataset": {"source": f"features:{tmp_path / 'f.parquet'}"}})
    with pytest.raises(gradcam.HeatmapError, match="no images"):
        gradcam.sample_images(config)
