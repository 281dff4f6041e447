"""What an exported model takes in, and the raw inputs of the samples a fold was scored on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.datasets import DatasetError, open_image_source
from evoprune.workers.features.feature_cache import read_feature_file

# An exported model reads images unless the dataset is given as features.
IMAGES = "images"
FEATURES = "features"
READ_BATCH = 256


@dataclass(frozen=True)
class RawInputs:
    """Samples as the exported model reads them: images (N, H, W, C) in [0, pixel_max], or features (N, D)."""

    kind: str  # IMAGES or FEATURES
    values: np.ndarray
    labels: np.ndarray
    pixel_max: float | None  # the source's brightest value; None for features

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(side) for side in self.values.shape[1:])


def raw_inputs(config: ExperimentConfig, rows: np.ndarray) -> RawInputs:
    """Read the dataset's samples at `rows` (source order) as the exported model takes them.

    Images are read again from the source with the experiment's image size, exactly as the feature
    extraction read them; a `features:` source gives its feature vectors.

    Args:
        config: the experiment.
        rows: row numbers in the source's own order (workers.features.assemble.fitness_rows).

    Returns:
        The samples, in the order of `rows`.

    Raises:
        DatasetError: the source cannot be read, or holds fewer rows than asked for.

    """
    rows = np.asarray(rows, dtype=np.int64)
    spec = config.dataset.source
    kind, _, rest = spec.partition(":")
    if kind == "features":
        table = read_feature_file(Path(rest).expanduser())
        return RawInputs(FEATURES, table.features[rows], table.labels[rows].astype(np.int64), None)
    dataset = config.dataset
    source = open_image_source(
        spec, image_size=dataset.image_size, folds=dataset.folds, resize=dataset.resize
    )
    # position of every wanted row in the answer, so the answer follows `rows` whatever its order
    wanted = {int(row): position for position, row in enumerate(rows)}
    images: list[np.ndarray | None] = [None] * len(rows)
    labels = np.zeros(len(rows), dtype=np.int64)
    offset = 0
    for chunk in source.chunks(READ_BATCH):
        for index in range(len(chunk.labels)):
            position = wanted.get(offset + index)
            if position is not None:
                images[position] = chunk.images[index]
                labels[position] = chunk.labels[index]
        offset += len(chunk.labels)
    missing = [int(rows[position]) for position, image in enumerate(images) if image is None]
    if missing:
        raise DatasetError(f"{spec}: the source holds {offset} samples; row {missing[0]} is missing")
    values = np.stack([image for image in images if image is not None])
    return RawInputs(IMAGES, values, labels, source.pixel_max)
