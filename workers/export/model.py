"""A pruned head as a physically smaller Keras model: only the kept inputs and units, behind the backbone."""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evoprune.shared.config import BackboneConfig
from evoprune.workers.evaluation.head_layout import HeadShape
from evoprune.workers.export.inputs import FEATURES, RawInputs
from evoprune.workers.export.report import BATCH_KEYS, BatchKey, ByBatch, HeadLatencies
from evoprune.workers.features.backbones import PIXELS, build_backbone

# Each head's latency is the median of LATENCY_REPETITIONS timed blocks of calls per batch size; a block
# of 20 one-image calls (about 10 ms on 2 CPU cores) is long enough for the timer and short enough that the
# load seldom changes within it.
LATENCY_REPETITIONS = 41
LATENCY_CALLS_PER_BLOCK: ByBatch[int] = {"single_ms": 20, "batched_ms": 4}
LATENCY_WARMUP = 20
THROUGHPUT_BATCH = 256
LATENCY_BATCH_SIZES: ByBatch[int] = {"single_ms": 1, "batched_ms": THROUGHPUT_BATCH}
# a head to time: kept indices per position, and its weights (None: Keras's initial ones)
Head = tuple[Sequence[np.ndarray], Sequence[np.ndarray] | None]


@dataclass(frozen=True)
class HeadCost:
    """Size and arithmetic of a dense head per image.

    FLOPs count 2 per kernel weight (a multiply and an add) and 1 per bias; ReLU, softmax and the gather
    of kept features are not counted.
    """

    widths: tuple[int, ...]  # input, hidden..., classes
    parameters: int
    flops: int


def head_cost(widths: Sequence[int], hidden_bias: bool) -> HeadCost:
    """Parameters and FLOPs per image of a dense head of these widths.

    Args:
        widths: input width, hidden widths, number of classes.
        hidden_bias: whether the hidden layers have biases (the output layer always has one).

    Returns:
        The cost.

    """
    kernels = sum(fan_in * fan_out for fan_in, fan_out in itertools.pairwise(widths))
    biases = widths[-1] + (sum(widths[1:-1]) if hidden_bias else 0)
    return HeadCost(tuple(int(width) for width in widths), int(kernels + biases), int(2 * kernels + biases))


def pruned_widths(shape: HeadShape, kept: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Widths of the head a mask leaves: kept inputs, kept units per hidden layer, classes."""
    return (*(len(indices) for indices in kept), shape.num_classes)


def head_layers(
    features: Any,
    shape: HeadShape,
    kept: Sequence[np.ndarray],
    params: Sequence[np.ndarray] | None,
    prefix: str = "",
) -> Any:
    """Apply a head to a symbolic (None, D) feature tensor, returning class probabilities.

    The head keeps only what the mask kept: a gather of the kept features (a `keras.ops.take` node with
    the indices as a constant, which plain `keras.saving.load_model` restores), then dense layers whose
    kernels have only the kept rows and columns. A position that keeps nothing becomes one unit of zero
    weights (Keras has no empty layer), which computes the same.

    Args:
        features: the symbolic input features.
        shape: the full head's shape.
        kept: kept indices per position (input, hidden...), as evaluation.head_layout.active_indices gives.
        params: the trained compact weights (kernels, hidden biases, output bias, as the evaluator keeps
            them); None leaves Keras's initial weights (for timing an unpruned head).
        prefix: put before the layers' names (a model's layer names must be unique: an ensemble's heads
            are `member_0_hidden_1`, ...).

    Returns:
        The symbolic probabilities.

    """
    import keras
    from keras import ops

    kept, params = _without_empty_widths(shape, kept, params)
    x = features
    inputs = np.asarray(kept[0], dtype=np.int32)
    if len(inputs) != shape.widths[0] or not np.array_equal(inputs, np.arange(shape.widths[0])):
        x = ops.take(x, inputs, axis=1)
    widths = pruned_widths(shape, kept)
    hidden_count = len(shape.widths) - 1
    dense_layers = []
    for layer in range(hidden_count):
        dense = keras.layers.Dense(
            widths[layer + 1],
            activation="relu",
            use_bias=shape.hidden_bias,
            name=f"{prefix}hidden_{layer + 1}",
        )
        x = dense(x)
        dense_layers.append(dense)
    output = keras.layers.Dense(shape.num_classes, activation="softmax", name=f"{prefix}probabilities")
    probabilities = output(x)
    if params is not None:
        kernels = list(params[: hidden_count + 1])
        biases = list(params[hidden_count + 1 : -1]) if shape.hidden_bias else []
        for layer, dense in enumerate(dense_layers):
            dense.set_weights([kernels[layer], *([biases[layer]] if shape.hidden_bias else [])])
        output.set_weights([kernels[-1], params[-1]])
    return probabilities


def _without_empty_widths(
    shape: HeadShape, kept: Sequence[np.ndarray], params: Sequence[np.ndarray] | None
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Give every position that keeps nothing one unit whose weights are all zero.

    Keras has no dense layer of zero units, and a layer of one unit with a zero kernel column, zero bias
    and a zero row in the next kernel contributes exactly nothing: relu(0) = 0 and 0·w = 0.
    """
    kept = [np.asarray(indices) for indices in kept]
    empty = [position for position, indices in enumerate(kept) if len(indices) == 0]
    if not empty:
        return kept, None if params is None else list(params)
    layers = len(shape.widths)
    padded = None if params is None else [np.asarray(array) for array in params]
    for position in empty:
        kept[position] = np.zeros(1, dtype=np.int64)
        if padded is None:
            continue
        # kernel `position` reads this position (one zero row); kernel `position - 1` and the hidden bias
        # of a hidden position write it (one zero column, one zero bias)
        incoming = padded[position]
        padded[position] = np.zeros((1, incoming.shape[1]), dtype=incoming.dtype)
        if position > 0:
            outgoing = padded[position - 1]
            padded[position - 1] = np.zeros((outgoing.shape[0], 1), dtype=outgoing.dtype)
            if shape.hidden_bias:
                padded[layers + position - 1] = np.zeros(1, dtype=padded[layers + position - 1].dtype)
    return kept, padded


def head_model(shape: HeadShape, kept: Sequence[np.ndarray], params: Sequence[np.ndarray] | None) -> Any:
    """The head alone, from (None, D) features to probabilities (see `head_layers`)."""
    import keras

    features = keras.Input((shape.widths[0],), name="features")
    return keras.Model(features, head_layers(features, shape, kept, params), name="pruned_head")


def full_kept(shape: HeadShape) -> list[np.ndarray]:
    """Kept indices of the unpruned head: everything at every position."""
    return [np.arange(width) for width in shape.widths]


def export_model(
    backbone: BackboneConfig,
    sample: RawInputs,
    shape: HeadShape,
    kept: Sequence[np.ndarray],
    params: Sequence[np.ndarray],
) -> Any:
    """The deployable model: raw inputs, the backbone with the experiment's preprocessing, the pruned head.

    Args:
        backbone: the experiment's backbone config.
        sample: samples of the dataset as the model will read them (their shape and brightest value).
        shape: the full head's shape.
        kept: kept indices per position.
        params: the trained compact weights.

    Returns:
        An uncompiled keras.Model mapping a batch of raw inputs to class probabilities.

    """
    import keras

    inputs, features = backbone_features(backbone, sample)
    return keras.Model(inputs, head_layers(features, shape, kept, params), name="evoprune_pruned")


def ensemble_model(
    backbone: BackboneConfig,
    sample: RawInputs,
    shape: HeadShape,
    members: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    combine: str,
) -> Any:
    """One deployable model of several pruned heads on one backbone, their outputs combined.

    The backbone runs once; each member's pruned head reads its features. `mean` averages the heads'
    softmax probabilities; `vote` averages their one-hot argmax, so that the output is each class's
    share of the votes and its argmax (the first, smallest, class among equal shares) is the majority
    vote of workers.analysis.ensembles.

    Args:
        backbone: the experiment's backbone config.
        sample: samples of the dataset as the model will read them.
        shape: the full head's shape (every member's).
        members: per member, its kept indices per position and its trained compact weights.
        combine: `mean` or `vote`.

    Returns:
        An uncompiled keras.Model mapping a batch of raw inputs to (N, C) combined outputs.

    """
    import keras

    inputs, features = backbone_features(backbone, sample)
    heads = [
        head_layers(features, shape, kept, params, prefix=f"member_{index}_")
        for index, (kept, params) in enumerate(members)
    ]
    if combine == "vote":
        heads = [_first_maximum(head) for head in heads]
    elif combine != "mean":
        raise ValueError(f"unknown combination {combine!r}; choose mean or vote")
    # a one-member Average layer is refused by Keras; its mean is the member itself
    combined = heads[0] if len(heads) == 1 else keras.layers.Average(name=combine)(heads)
    return keras.Model(inputs, combined, name=f"evoprune_ensemble_{combine}")


def _first_maximum(probabilities: Any) -> Any:
    """One-hot of each row's largest value, the first among equal ones (as numpy's argmax chooses).

    Built from comparisons and a cumulative sum rather than `argmax` and `one_hot`: Keras's TensorFlow
    argmax brings a bitwise op that the TFLite converter refuses without Flex ops.
    """
    from keras import ops

    largest = ops.cast(
        ops.greater_equal(probabilities, ops.max(probabilities, axis=-1, keepdims=True)), "float32"
    )
    # the running count of maxima is 1 exactly up to the first one's successor: keep the first only
    return largest * ops.cast(ops.equal(ops.cumsum(largest, axis=-1), 1.0), "float32")


def backbone_features(backbone: BackboneConfig, sample: RawInputs) -> tuple[Any, Any]:
    """The model's input and the features it computes from it, as the search's feature cache holds them.

    The preprocessing repeats workers.features.backbones.Backbone.extract step by step (scale to 0..255, grey
    to three channels, the family's `preprocess_input`), so the model's features equal the cached ones; the
    `pixels` backbone flattens the raw values as they are, and a `features:` dataset is read as it is.

    Args:
        backbone: the experiment's backbone config.
        sample: samples of the dataset as the model will read them (their shape and brightest value).

    Returns:
        The symbolic input and the symbolic (None, D) features.

    """
    import keras
    from keras import ops

    inputs = keras.Input(sample.sample_shape, name="images" if sample.kind != FEATURES else "features")
    if sample.kind == FEATURES:
        features = inputs
    elif backbone.name.lower() == PIXELS:
        features = keras.layers.Flatten(name="pixels")(inputs)
    else:
        height, width, channels = sample.sample_shape
        extractor = build_backbone(backbone.name, backbone.weights, (height, width))
        assert extractor.model is not None and extractor.preprocess is not None and sample.pixel_max
        x = keras.layers.Rescaling(255.0 / sample.pixel_max, name="to_0_255")(inputs)
        if channels == 1:
            x = ops.repeat(x, 3, axis=-1)
        elif channels > 3:
            x = ops.take(x, np.arange(3, dtype=np.int32), axis=-1)
        features = extractor.model(extractor.preprocess(x), training=False)
    return inputs, features


def head_latency_ms(
    shape: HeadShape, kept: Sequence[np.ndarray], params: Sequence[np.ndarray] | None
) -> ByBatch[float]:
    """Measured CPU time of one head per image: one image per call, and within a batch.

    Args:
        shape: the full head's shape.
        kept: kept indices per position (`full_kept(shape)` for the unpruned head).
        params: the weights, or None for Keras's initial ones (the arithmetic is the same).

    Returns:
        `single_ms` and `batched_ms`, medians as `head_latencies` measures them.

    """
    return _medians(_timed_blocks(shape, {"head": (kept, params)})["head"])


def head_latencies(shape: HeadShape, before: Head, after: Head) -> HeadLatencies:
    """Measured CPU time per image of a head before and after pruning, interleaved so they share the noise.

    The heads are built and run on the CPU whatever accelerator the backend sees, each compiled for the
    backend and warmed up. Then, LATENCY_REPETITIONS times, every head times a block of calls on one
    image and a block on THROUGHPUT_BATCH images, the heads taking turns (their order reversed every
    repetition), so a change in the machine's load falls on all of them alike rather than on whichever
    was measured last. A head's figure is the median over the repetitions of the block's time per call
    (per image for the batch); its spread is the interquartile range. One-image calls of a small head
    cost mostly the framework's dispatch, which pruning does not shrink: their before/after difference
    means something only where the spreads do not overlap. The numbers depend on the machine and its
    load, so they are reported, never asserted.

    Args:
        shape: the full head's shape.
        before: the unpruned head: kept indices per position (`full_kept(shape)`), weights or None for
            Keras's initial ones (the arithmetic is the same).
        after: the pruned head, likewise.

    Returns:
        `before` and `after`: `{"single_ms", "batched_ms"}` (medians); `spread`: per head the same keys
        as [first quartile, third quartile]; `method`: batch sizes, repetitions, calls per block,
        warm-up calls.

    """
    timed = _timed_blocks(shape, {"before": before, "after": after})
    return {
        "before": _medians(timed["before"]),
        "after": _medians(timed["after"]),
        "spread": {"before": _spread(timed["before"]), "after": _spread(timed["after"])},
        "method": {
            "batch_size": LATENCY_BATCH_SIZES.copy(),
            "repetitions": LATENCY_REPETITIONS,
            "calls_per_repetition": LATENCY_CALLS_PER_BLOCK.copy(),
            "warmup_calls": LATENCY_WARMUP,
            "statistic": "median over repetitions of a block's time per call (batched: per image); "
            "spread: interquartile range; the heads measured in turns, order reversed every repetition",
        },
    }


def _timed_blocks(shape: HeadShape, heads: Mapping[str, Head]) -> dict[str, dict[BatchKey, list[float]]]:
    """Per head and batch kind, the time per image of every repetition's block (see `head_latencies`)."""
    from evoprune.workers.backend import backend_name, compile_function

    rng = np.random.default_rng(0)
    batches = {
        key: rng.standard_normal((LATENCY_BATCH_SIZES[key], shape.widths[0])).astype(np.float32)
        for key in BATCH_KEYS
    }
    samples: dict[str, dict[BatchKey, list[float]]] = {
        name: {key: [] for key in BATCH_KEYS} for name in heads
    }
    with _on_cpu(backend_name()):
        from keras import ops

        tensors = {key: ops.convert_to_tensor(batch) for key, batch in batches.items()}
        forwards = {}
        for name, (kept, params) in heads.items():
            model = head_model(shape, kept, params)
            forwards[name] = compile_function(_inference(model))
            for tensor in tensors.values():
                for _ in range(LATENCY_WARMUP):
                    ops.convert_to_numpy(forwards[name](tensor))
        order = list(heads)
        for _ in range(LATENCY_REPETITIONS):
            for name in order:
                for key, tensor in tensors.items():
                    calls = LATENCY_CALLS_PER_BLOCK[key]
                    started = time.perf_counter()
                    for _ in range(calls):
                        # converting to numpy waits for the result on asynchronous backends
                        ops.convert_to_numpy(forwards[name](tensor))
                    elapsed = time.perf_counter() - started
                    samples[name][key].append(elapsed / calls / len(batches[key]) * 1e3)
            order.reverse()
    return samples


def _inference(model: Any) -> Any:
    def forward(batch: Any) -> Any:
        return model(batch, training=False)

    return forward


def _medians(blocks: Mapping[BatchKey, Sequence[float]]) -> ByBatch[float]:
    """A head's figure per batch kind: the median of its blocks' times per image."""
    return {
        "single_ms": statistics.median(blocks["single_ms"]),
        "batched_ms": statistics.median(blocks["batched_ms"]),
    }


def _spread(blocks: Mapping[BatchKey, Sequence[float]]) -> ByBatch[list[float]]:
    """A head's spread per batch kind: the first and third quartiles of its blocks' times per image."""
    return {"single_ms": _quartiles(blocks["single_ms"]), "batched_ms": _quartiles(blocks["batched_ms"])}


def _quartiles(values: Sequence[float]) -> list[float]:
    first, _, third = statistics.quantiles(values, n=4)
    return [first, third]


@contextlib.contextmanager
def _on_cpu(backend: str) -> Iterator[None]:
    """Place what is created and computed inside on the CPU (variables included)."""
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.device("/CPU:0"):
            yield
    elif backend == "jax":
        import jax

        with jax.default_device(jax.devices("cpu")[0]):
            yield
    else:
        yield
