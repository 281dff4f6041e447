"""Heatmaps of the most important neurons over sample images (Grad-CAM, or pixel maps for `pixels`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from evoprune.coordinator.analysis.inputs import ResultsInput
from evoprune.coordinator.analysis.plots import plot_heatmap_grid, plot_pixel_importance
from evoprune.coordinator.results.artifacts import artifact
from evoprune.workers.analysis.importance import BitMeaning, bit_label, solutions_using

if TYPE_CHECKING:  # the re-trainer pulls in Keras; this module stays importable without it
    from evoprune.workers.evaluation.retrain import RetrainedModel

HEATMAPS_PNG = "heatmaps.png"
PIXEL_IMPORTANCE_PNG = "pixel_importance.png"
logger = logging.getLogger(__name__)


class TopPixel(TypedDict):
    """A top bit of the `pixels` backbone and the pixel it stands for."""

    bit: int
    row: int
    column: int


class HeatmapsInfo(TypedDict, total=False):
    """The heatmaps' description in analysis.json: what was drawn and how, or why nothing was."""

    images: int
    split: str
    skipped: str | None  # why no heatmap was drawn; None when they were
    pixels: list[TopPixel]
    method: str
    layer: str  # the convolutional layer Grad-CAM used
    columns: list[str]  # the neurons drawn, one per column


def draw_heatmaps(
    inputs: ResultsInput,
    meanings: list[BitMeaning],
    top: list[int],
    frequencies: np.ndarray,
    models: list[RetrainedModel],
    out_dir: Path,
    samples: int,
) -> tuple[list[dict[str, str]], HeatmapsInfo]:
    """Draw the heatmaps of the top bits on a few sample images of the dataset.

    A feature bit of a CNN backbone is channel k of its last convolutional block: Grad-CAM of that
    channel's pooled activation. A hidden-unit bit is drawn with the head of the most accurate front
    member that keeps the unit (fold 0's head on k-fold data): Grad-CAM of the unit's pre-activation. With
    the `pixels` backbone a feature bit is a pixel: the per-pixel frequency map and the top pixels on the
    images; a hidden unit's map is its gradient × input over the pixels.

    Args:
        inputs: the results directory's contents.
        meanings: what every bit stands for.
        top: the most important bits, most important first.
        frequencies: (L,) frequency of every bit in the aggregated front.
        models: the re-trained aggregated front, in `inputs.aggregate` order.
        out_dir: where the PNGs go.
        samples: sample images wanted.

    Returns:
        (artifacts written, a description for analysis.json); heatmaps that cannot be drawn are skipped
        and the description says why.

    """
    from evoprune.workers.analysis import gradcam
    from evoprune.workers.features.datasets import DatasetError

    config = inputs.config
    if not top:
        return [], {"skipped": "no mask bit is used by the aggregated front"}
    try:
        images = gradcam.sample_images(config, samples)
    except (gradcam.HeatmapError, DatasetError, OSError) as error:
        logger.warning("heatmaps skipped: %s", error)
        return [], {"skipped": str(error)}
    row_labels = [_class_name(images.class_names, label) for label in images.labels]
    pixels = gradcam.is_pixels(config)
    written: list[dict[str, str]] = []
    info: HeatmapsInfo = {"images": len(images.images), "split": images.split, "skipped": None}
    name = config.name
    if pixels and any(meanings[bit].position == 0 for bit in top):
        input_bits = [bit for bit in top if meanings[bit].position == 0]
        segment = meanings[input_bits[0]].segment
        segment_bits = [m.bit for m in meanings if m.segment == segment]
        shape = images.images.shape[1:]
        try:
            frequency_map = gradcam.pixel_map(frequencies[segment_bits], shape)
        except gradcam.HeatmapError as error:
            return [], {"skipped": str(error)}
        width, channels = shape[1], shape[2]
        top_pixels = [
            (meanings[bit].unit // (width * channels), meanings[bit].unit // channels % width)
            for bit in input_bits
        ]
        plot_pixel_importance(
            frequency_map,
            images.images,
            top_pixels,
            row_labels,
            out_dir / PIXEL_IMPORTANCE_PNG,
            f"{name}: pixel frequency in the aggregated front and the top {len(top_pixels)} pixels",
            images.pixel_max,
        )
        written.append(
            artifact(PIXEL_IMPORTANCE_PNG, "per-pixel frequency map and the top pixels on sample images")
        )
        info["pixels"] = [
            {"bit": bit, "row": y, "column": x} for bit, (y, x) in zip(input_bits, top_pixels, strict=True)
        ]
    columns = [bit for bit in top if not (pixels and meanings[bit].position == 0)]
    if not columns:
        return written, info
    targets = [_target(inputs, meanings[bit], models) for bit in columns]
    if pixels:
        maps = gradcam.pixel_saliency(images, targets)
        info["method"] = "gradient × input over pixels"
        title = f"{name}: gradient × input of the top hidden units"
    else:
        backbone = gradcam.load_backbone(config, images)
        info["layer"] = gradcam.last_conv_layer(backbone.model).name
        maps = gradcam.gradcam(backbone, images, targets)
        info["method"] = "grad-cam"
        title = f"{name}: Grad-CAM of the top {len(columns)} neurons on layer {info['layer']}"
    labels = [bit_label(meanings[bit]) for bit in columns]
    plot_heatmap_grid(
        images.images, maps, row_labels, labels, out_dir / HEATMAPS_PNG, title, images.pixel_max
    )
    written.append(
        artifact(HEATMAPS_PNG, "heatmaps of the top neurons on sample images (rows images, columns neurons)")
    )
    info["columns"] = labels
    return written, info


def head_owners(inputs: ResultsInput, meanings: list[BitMeaning], top: list[int]) -> set[int]:
    """The front members whose trained heads the heatmaps need: one per top hidden-unit bit.

    Args:
        inputs: the results directory's contents.
        meanings: what every bit stands for.
        top: the most important bits.

    Returns:
        Positions in `inputs.aggregate` (so in the re-trained models).

    """
    return {_owner(inputs, bit) for bit in top if meanings[bit].position > 0}


def _owner(inputs: ResultsInput, bit: int) -> int:
    # aggregate is sorted best accuracy first, so the first member that keeps the bit is the most accurate
    return int(solutions_using(inputs.masks, bit)[0])


def _target(inputs: ResultsInput, meaning: BitMeaning, models: list[RetrainedModel]) -> Any:
    from evoprune.workers.analysis import gradcam

    if meaning.position == 0:
        return gradcam.feature_target(meaning.unit)
    head = models[_owner(inputs, meaning.bit)].folds[0]
    return gradcam.unit_target(
        head.params, head.kept, inputs.config.head.hidden_bias, meaning.position, meaning.unit
    )


def _class_name(names: tuple[str, ...], label: int) -> str:
    return f"class {names[label]}" if 0 <= label < len(names) else f"class {label}"
