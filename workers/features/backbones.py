"""Frozen feature extractors: raw pixels, or any keras.applications model with its own preprocessing."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PIXELS = "pixels"
# Keras needs a seed for weights=None to give the same (random) features on every build, so that a
# rebuilt cache entry matches the one it replaces.
RANDOM_WEIGHTS_SEED = 0
MIN_CNN_SIDE = 32
RESIZE_METHODS = ("bilinear", "nearest")


class BackboneError(ValueError):
    """A backbone that cannot be built: unknown name, missing weights file, unsuitable input size."""


@functools.cache
def keras_models() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """Find the keras.applications models by looking through its submodules.

    Returns:
        Lowercase model name (e.g. `resnet50`, `efficientnetb0`) → (constructor, that family's
        `preprocess_input`).

    """
    import keras.applications as applications

    families = {
        name: module
        for name, module in inspect.getmembers(applications, inspect.ismodule)
        if hasattr(module, "preprocess_input")
    }
    registry: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
    for module in families.values():
        for name, constructor in inspect.getmembers(module, inspect.isfunction):
            if name[:1].isupper():
                registry.setdefault(name.lower(), (constructor, module.preprocess_input))
    # Some families (MobileNetV3) export their constructors only at the top level; their defining
    # module names the family.
    for name, constructor in inspect.getmembers(applications, inspect.isfunction):
        family = families.get(constructor.__module__.rpartition(".")[2])
        if name[:1].isupper() and family is not None:
            registry.setdefault(name.lower(), (constructor, family.preprocess_input))
    return registry


@functools.lru_cache(maxsize=64)
def nearest_indices(source_length: int, target_length: int) -> np.ndarray:
    """The source index PIL's nearest resize picks for each target position along one axis.

    The positions are read off PIL itself (a row of int32 indices, resized), so a gather with them equals
    `Image.resize(..., NEAREST)` pixel for pixel; keras.ops.image.resize's nearest rounds some ratios the
    other way.

    Args:
        source_length: pixels along the axis before the resize.
        target_length: pixels after it.

    Returns:
        (target_length,) int64 indices into the source axis.

    """
    row = Image.fromarray(np.arange(source_length, dtype=np.int32)[None, :])  # mode "I"
    picked = np.asarray(row.resize((target_length, 1), Image.Resampling.NEAREST))[0].astype(np.int64)
    picked.setflags(write=False)  # shared by every caller through the cache
    return picked


def _check_resize(resize: str) -> None:
    if resize not in RESIZE_METHODS:
        raise BackboneError(f"dataset.resize is {resize!r}; expected one of {', '.join(RESIZE_METHODS)}")


def resize_batch(batch: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """Resize a (n, H, W, C) float32 batch, the backbone's own input resize.

    Args:
        batch: the images.
        size: (height, width) wanted.
        resize: `bilinear` (keras.ops.image.resize) or `nearest` (PIL's nearest, as the datasets resize).

    Returns:
        (n, height, width, C) float32.

    Raises:
        BackboneError: an unknown resize.

    """
    _check_resize(resize)
    if resize == "nearest":
        rows = nearest_indices(batch.shape[1], size[0])
        columns = nearest_indices(batch.shape[2], size[1])
        return np.ascontiguousarray(batch[:, rows][:, :, columns])
    import keras

    return np.asarray(keras.ops.convert_to_numpy(keras.ops.image.resize(batch, size)), dtype=np.float32)


def backbone_names() -> list[str]:
    """List every name `build_backbone` accepts, sorted."""
    return sorted([PIXELS, *keras_models()])


@dataclass
class Backbone:
    """A built feature extractor; `extract` maps a batch of images to (n, D) float32 features."""

    name: str
    input_size: tuple[int, int] | None
    model: Any = None
    preprocess: Callable[..., Any] | None = None
    output_dim: int | None = None
    resize: str = "bilinear"

    def extract(self, images: np.ndarray, pixel_max: float) -> np.ndarray:
        """Compute the features of one batch.

        Args:
            images: (n, H, W, C) images with values in [0, pixel_max]; C = 1 is stacked to 3 channels for
                a CNN, and images of another size are resized to the model's input size (by `resize`).
            pixel_max: the brightest value of the source (16 for the digits, 255 for photos).

        Returns:
            (n, D) float32 features.

        """
        inputs = self.model_inputs(images, pixel_max)
        if self.model is None:
            return inputs  # the `pixels` backbone: its inputs are the features
        import keras

        return np.asarray(keras.ops.convert_to_numpy(self.model(inputs, training=False)), dtype=np.float32)

    def model_inputs(self, images: np.ndarray, pixel_max: float) -> np.ndarray:
        """The batch the model takes for images: the one preprocessing of extraction and of Grad-CAM.

        Feature extraction (`extract`) and the heatmaps (workers.analysis.gradcam) both call this, so the
        images a heatmap is drawn on are the ones the cached features came from.

        Args:
            images: (n, H, W, C) images with values in [0, pixel_max].
            pixel_max: the brightest value of the source.

        Returns:
            For a CNN, (n, height, width, 3) float32 after the family's `preprocess_input`; for `pixels`,
            (n, H·W·C) float32: the raw values flattened, which are that backbone's features.

        """
        if self.model is None or self.preprocess is None:
            return images.reshape(len(images), -1).astype(np.float32)
        return np.asarray(self.preprocess(self.rgb_batch(images, pixel_max)), dtype=np.float32)

    def rgb_batch(self, images: np.ndarray, pixel_max: float) -> np.ndarray:
        """A CNN's batch before its `preprocess_input`: 0..255, three channels, at the input size.

        Args:
            images: (n, H, W, C) images with values in [0, pixel_max].
            pixel_max: the brightest value of the source.

        Returns:
            (n, height, width, 3) float32; images of another size resized by `resize`.

        """
        batch = images.astype(np.float32) * np.float32(255.0 / pixel_max)
        if batch.shape[-1] == 1:
            batch = np.repeat(batch, 3, axis=-1)
        batch = batch[..., :3]
        if self.input_size is not None and batch.shape[1:3] != self.input_size:
            batch = resize_batch(batch, self.input_size, self.resize)
        return batch


def build_backbone(
    name: str, weights: str | None, input_size: tuple[int, int], resize: str = "bilinear"
) -> Backbone:
    """Build a frozen feature extractor.

    Args:
        name: `pixels` or a keras.applications model name, case-insensitive.
        weights: `imagenet` (downloaded by Keras on first use and cached), None (random, seeded), or a
            path to a weights file.
        input_size: (height, width) of the images the model will see.
        resize: how `extract` resizes images of another size: `bilinear` or `nearest` (config
            `dataset.resize`, so that it matches the dataset's own resize).

    Returns:
        The backbone; a CNN is built with `include_top=False, pooling="avg"`.

    Raises:
        BackboneError: unknown name or resize, missing weights file, or Keras refusing the input size.

    """
    _check_resize(resize)
    key = name.lower()
    if key == PIXELS:
        return Backbone(PIXELS, None, resize=resize)
    models = keras_models()
    if key not in models:
        examples = ", ".join(("pixels", "resnet50", "densenet121", "vgg19", "mobilenet", "efficientnetb0"))
        raise BackboneError(
            f"unknown backbone {name!r}; valid names include {examples} ({len(models) + 1} in all)"
        )
    constructor, preprocess = models[key]
    if weights not in ("imagenet", None) and not Path(weights).expanduser().is_file():
        raise BackboneError(f"backbone weights file {weights} does not exist")
    height, width = input_size
    if min(height, width) < MIN_CNN_SIDE:
        raise BackboneError(
            f"backbone {name} needs images of at least {MIN_CNN_SIDE}×{MIN_CNN_SIDE}, got {height}×{width}: "
            "set dataset.image_size"
        )
    import keras

    if weights is None:
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    resolved = str(Path(weights).expanduser()) if weights not in ("imagenet", None) else weights
    try:
        model = constructor(
            include_top=False, pooling="avg", weights=resolved, input_shape=(height, width, 3)
        )
    except ValueError as error:
        raise BackboneError(f"cannot build backbone {name} for {height}×{width} images: {error}") from None
    model.trainable = False
    return Backbone(key, (height, width), model, preprocess, int(model.output_shape[-1]), resize)
