"""How a mask maps onto the head: which widths it prunes, the shared initial weights, the per-mask layout."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from evoprune.shared.config import HeadConfig
from evoprune.shared.masks import MaskError

# Compacted reductions are computed in chunks of this many terms so that a model's sums are taken in the
# same order whatever the padding its batch needs: that keeps every mask's result bitwise independent of
# which other masks share its batch (measured: padding a 1000-term TF matmul by 200 zeros changes it).
REDUCTION_CHUNK = 128


@dataclass(frozen=True)
class HeadShape:
    """Widths of the head: position 0 is the input, positions 1..n the hidden layers."""

    widths: tuple[int, ...]  # (input_dim, hidden_1, ..., hidden_n)
    num_classes: int
    hidden_bias: bool
    pruned_positions: tuple[int, ...]  # positions whose width the mask selects
    segments: tuple[tuple[int, int], ...]  # (position, length) per mask segment, in mask order

    @property
    def mask_length(self) -> int:
        return sum(length for _, length in self.segments)

    @property
    def layer_count(self) -> int:
        """Kernels including the output layer."""
        return len(self.widths)


def head_shape(head: HeadConfig, input_dim: int, num_classes: int) -> HeadShape:
    """Resolves a head config against the data.

    In `features` mode a masked layer's inputs are selected: for layer 0 the features, for layer l > 0 the
    units of layer l-1, which then feed nothing and are removed exactly. In `neurons` mode the masked
    layer's own units are selected.

    Args:
        head: the head config.
        input_dim: features per sample.
        num_classes: output classes.

    Returns:
        The resolved shape.
    """
    widths = (input_dim, *head.layers)
    segments = []
    for layer in head.masked:
        position = layer if head.mode == "features" else layer + 1
        segments.append((position, widths[position]))
    positions = tuple(position for position, _ in segments)
    if len(set(positions)) != len(positions):
        raise MaskError("two masked layers select the same width; mask distinct layers")
    return HeadShape(widths, num_classes, head.hidden_bias, positions, tuple(segments))


def initial_weights(shape: HeadShape, seed: int) -> list[np.ndarray]:
    """Keras-default initial weights of the full head, the same for every mask.

    Glorot-uniform kernels (limit sqrt(6 / (fan_in + fan_out))) drawn with numpy from `seed`, so the
    numbers are the same on every backend and device; biases start at zero.

    Args:
        shape: the head shape.
        seed: the evaluation seed.

    Returns:
        Kernels [W_0, ..., W_n] (W_n is the output layer), then hidden biases if any, then the output bias.
    """
    generator = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    sizes = [*shape.widths, shape.num_classes]
    kernels = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        kernels.append(generator.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32))
    biases = []
    if shape.hidden_bias:
        biases = [np.zeros(width, dtype=np.float32) for width in shape.widths[1:]]
    return [*kernels, *biases, np.zeros(shape.num_classes, dtype=np.float32)]


def active_indices(shape: HeadShape, mask: np.ndarray) -> list[np.ndarray]:
    """The kept indices at every position for one mask.

    Args:
        shape: the head shape.
        mask: a 1-D boolean mask of `shape.mask_length` bits.

    Returns:
        One int array per position (input and hidden widths); unpruned positions keep everything.

    Raises:
        MaskError: the mask has the wrong length.
    """
    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.shape[0] != shape.mask_length:
        raise MaskError(
            f"a mask for this head must have {shape.mask_length} bits, got shape {tuple(mask.shape)}"
        )
    kept = [np.arange(width) for width in shape.widths]
    offset = 0
    for position, length in shape.segments:
        kept[position] = np.flatnonzero(mask[offset : offset + length])
        offset += length
    return kept


def padded_width(count: int, pruned: bool) -> int:
    """Width a position is padded to inside a batch: chunk multiples for pruned positions."""
    if not pruned:
        return count
    return max(REDUCTION_CHUNK, -(-count // REDUCTION_CHUNK) * REDUCTION_CHUNK)
