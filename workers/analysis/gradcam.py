"""Heatmaps of important neurons: Grad-CAM on the backbone's last convolutional block, pixel saliency.

Grad-CAM (Selvaraju et al., 2017) runs under the TensorFlow backend: `tf.GradientTape` records the
backbone's forward pass and gives the gradient of a target (a pooled feature channel, or a head unit's
pre-activation) with respect to the last 4-D activation before global pooling; the channel weights are
the spatial means of that gradient, the map is ReLU(Σ_k α_k A^k), upsampled to the image and scaled to
[0, 1]. For the `pixels` backbone a bit is a pixel (or a head unit over pixels), so the map is a pixel
saliency: ReLU(gradient × input) of the unit's pre-activation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.backbones import PIXELS, Backbone, build_backbone
from evoprune.workers.features.datasets import open_image_source

Target = Callable[[Any], Any]  # pooled features (n, D) tensor → (n,) tensor
DEFAULT_SAMPLES = 4
SAMPLE_SPLIT_PREFERENCE = ("test", "validation", "train")


class HeatmapError(ValueError):
    """Heatmaps that cannot be drawn for this experiment (no images, no convolutional map...)."""


@dataclass(frozen=True)
class SampleImages:
    """A few images of the dataset, spread over its classes, values in [0, pixel_max]."""

    images: np.ndarray  # (n, H, W, C)
    labels: np.ndarray  # (n,)
    pixel_max: float
    class_names: tuple[str, ...]
    split: str


def sample_images(config: ExperimentConfig, count: int = DEFAULT_SAMPLES) -> SampleImages:
    """Pick `count` images of the dataset: one class after another, from the test split when there is one.

    Args:
        config: the experiment (its dataset source and image size).
        count: images wanted.

    Returns:
        The images, at the size the backbone saw them.

    Raises:
        HeatmapError: the dataset is given as features (there are no images).

    """
    dataset = config.dataset
    if dataset.source.startswith("features:"):
        raise HeatmapError("the dataset is given as features; there are no images to draw heatmaps on")
    source = open_image_source(
        dataset.source, image_size=dataset.image_size, folds=dataset.folds, resize=dataset.resize
    )
    # per split and class, the first `count` images in reading order: enough to choose from, and small
    found: dict[str, dict[int, list[np.ndarray]]] = {}
    for chunk in source.chunks(max(count, 32)):
        classes = found.setdefault(chunk.split, {})
        for image, label in zip(chunk.images, chunk.labels, strict=True):
            kept = classes.setdefault(int(label), [])
            if len(kept) < count:
                kept.append(image)
    split = next(name for name in SAMPLE_SPLIT_PREFERENCE if name in found)
    by_class = found[split]
    images: list[np.ndarray] = []
    labels: list[int] = []
    for round_index in range(count):
        for label in sorted(by_class):
            if len(images) < count and round_index < len(by_class[label]):
                images.append(by_class[label][round_index])
                labels.append(label)
    return SampleImages(np.stack(images), np.array(labels), source.pixel_max, source.class_names, split)


def load_backbone(config: ExperimentConfig, samples: SampleImages) -> Backbone:
    """Build the experiment's backbone as the feature cache did (same size, same seeded random weights)."""
    height, width = samples.images.shape[1:3]
    backbone = config.backbone
    return build_backbone(backbone.name, backbone.weights, (height, width), config.dataset.resize)


def last_conv_layer(model: Any) -> Any:
    """The last layer with a 4-D (batch, height, width, channels) output: the input of global pooling."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer
    raise HeatmapError(f"{model.name} has no convolutional feature map to draw Grad-CAM on")


def feature_target(channel: int) -> Target:
    """The target of a feature bit: channel `channel` of the pooled backbone output."""
    return lambda pooled: pooled[:, channel]


def unit_target(
    params: tuple[np.ndarray, ...], kept: tuple[np.ndarray, ...], hidden_bias: bool, position: int, unit: int
) -> Target:
    """The target of a hidden-unit bit: that unit's pre-activation in a trained head.

    Args:
        params: the head's unpadded trained weights (workers.evaluation.retrain.FoldOutputs.params).
        kept: kept indices per position of that head.
        hidden_bias: whether hidden layers have biases.
        position: the hidden position (1 = first hidden layer).
        unit: the unit's index in the full layer.

    Returns:
        A function of the pooled features giving the pre-activation per sample.

    Raises:
        HeatmapError: the head does not keep that unit.

    """
    from keras import ops

    index = int(np.searchsorted(kept[position], unit))
    if index >= len(kept[position]) or kept[position][index] != unit:
        raise HeatmapError(f"the head does not keep unit {unit} of hidden layer {position}")
    layer_count = len(kept)

    def target(pooled: Any) -> Any:
        activation = ops.take(pooled, ops.convert_to_tensor(kept[0]), axis=1)
        for layer in range(position):
            pre_activation = ops.matmul(activation, ops.convert_to_tensor(params[layer]))
            if hidden_bias:
                pre_activation = pre_activation + ops.convert_to_tensor(params[layer_count + layer])
            if layer + 1 == position:
                return pre_activation[:, index]
            activation = ops.relu(pre_activation)
        raise HeatmapError("position 0 is the input: use feature_target")

    return target


def gradcam(backbone: Backbone, samples: SampleImages, targets: list[Target]) -> np.ndarray:
    """Grad-CAM maps of every target on every sample image.

    Args:
        backbone: a keras.applications backbone (not `pixels`).
        samples: the images.
        targets: functions of the pooled features.

    Returns:
        (images, targets, H, W) maps in [0, 1] at the images' size.

    """
    import tensorflow as tf

    if backbone.model is None:
        raise HeatmapError("Grad-CAM needs a convolutional backbone; use pixel_saliency for `pixels`")
    import keras

    conv_layer = last_conv_layer(backbone.model)
    probe = keras.Model(backbone.model.inputs[0], [conv_layer.output, backbone.model.output])
    inputs = tf.convert_to_tensor(backbone.model_inputs(samples.images, samples.pixel_max))
    # The backbone is frozen (no trainable variables), so the tape is told to follow the inputs.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        feature_map, pooled = probe(inputs, training=False)
        outputs = [target(pooled) for target in targets]
    maps = []
    for output in outputs:
        gradient = tape.gradient(output, feature_map)
        weights = tf.reduce_mean(gradient, axis=(1, 2), keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy())
    del tape
    stacked = np.stack(maps, axis=1)  # (n, K, h, w)
    return _normalise(_upsample(stacked, samples.images.shape[1:3]))


def pixel_saliency(samples: SampleImages, targets: list[Target]) -> np.ndarray:
    """ReLU(gradient × input) of each target over the pixels, for the `pixels` backbone.

    Args:
        samples: the images; their flattened values are the features.
        targets: functions of the (n, D) pixel features.

    Returns:
        (images, targets, H, W) maps in [0, 1], channels summed.

    """
    import tensorflow as tf

    height, width, channels = samples.images.shape[1:]
    # the features of the `pixels` backbone are its inputs, the raw values flattened
    pixels = build_backbone(PIXELS, None, (height, width))
    features = tf.convert_to_tensor(pixels.model_inputs(samples.images, samples.pixel_max))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        outputs = [target(features) for target in targets]
    maps = []
    for output in outputs:
        gradient = tape.gradient(output, features)
        relevance = tf.nn.relu(gradient * features).numpy().reshape(-1, height, width, channels)
        maps.append(relevance.sum(axis=-1))
    del tape
    return _normalise(np.stack(maps, axis=1))


def pixel_map(values: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Per-bit values of a `pixels` mask laid out as an (H, W) image, channels averaged.

    Args:
        values: (H·W·C,) one value per pixel feature, in the order `Backbone.extract` flattens images.
        image_shape: (H, W, C).

    Returns:
        (H, W) map.

    """
    height, width, channels = image_shape
    if values.shape != (height * width * channels,):
        raise HeatmapError(
            f"the mask has {values.shape[0]} bits but the images have {height}×{width}×{channels} pixels"
        )
    return values.reshape(height, width, channels).mean(axis=-1)


def is_pixels(config: ExperimentConfig) -> bool:
    """Whether the experiment's features are raw pixels."""
    return config.backbone.name.lower() == PIXELS


def _upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import keras

    count, targets, height, width = maps.shape
    flat = maps.reshape(count * targets, height, width, 1).astype(np.float32)
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(flat, size, interpolation="bilinear"))
    return np.asarray(resized).reshape(count, targets, *size)


def _normalise(maps: np.ndarray) -> np.ndarray:
    peaks = maps.max(axis=(-2, -1), keepdims=True)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1.0), 0.0).astype(np.float32)
