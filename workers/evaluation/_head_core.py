"""The population-batched numerical core in keras.ops: P masked heads trained in one computation.

Gradients are written out by hand (two dense layers, ReLU, softmax cross-entropy), which keeps the core
free of any backend's autodiff so it runs unchanged under TensorFlow and JAX. Every model's weights are
compacted to the widths its mask keeps, padded at the end to chunk multiples; reductions over those
widths go through `chunked_matmul` so each model's sums are taken in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from evoprune.workers.evaluation.head_layout import REDUCTION_CHUNK

Tensor = Any
# Keras 2's epsilon and the clip bounds of its cross-entropy on probabilities, as float32 (Keras 2 converted
# 1e-7 and 1 - 1e-7, computed in Python floats, to the output's dtype).
CLIP_LOW = float(np.float32(1e-7))
CLIP_HIGH = float(np.float32(1.0 - 1e-7))


@dataclass(frozen=True)
class CoreSpec:
    """Static facts the compiled functions are specialised on."""

    pruned: tuple[bool, ...]  # per position (input, hidden...): whether its width is compacted
    hidden_bias: bool
    learning_rate: float
    momentum: float
    nesterov: bool
    decay: float
    clipped_loss: bool = False  # training.loss keras2_clipped
    float64_loss: bool = False  # early_stopping.decision keras2_float64: epoch loss summed as Keras 2 did

    @property
    def hidden_count(self) -> int:
        return len(self.pruned) - 1


def chunked_matmul(left: Tensor, right: Tensor, chunked: bool) -> Tensor:
    """Batched (P, M, K) @ (P, K, H) whose K-sum is taken chunk by chunk, in order, when `chunked`.

    Zero padding beyond a model's real width then only adds exact zeros at the end, so the result does
    not depend on how far its batch was padded.
    """
    if not chunked:
        return ops.matmul(left, right)
    models, rows = ops.shape(left)[0], ops.shape(left)[1]
    columns = ops.shape(right)[2]
    left_chunks = ops.transpose(ops.reshape(left, (models, rows, -1, REDUCTION_CHUNK)), (0, 2, 1, 3))
    right_chunks = ops.reshape(right, (models, -1, REDUCTION_CHUNK, columns))
    partial = ops.matmul(left_chunks, right_chunks)  # (P, chunks, M, H)
    # the chunk count is static (padded widths are); an unrolled chain of adds keeps the order fixed and,
    # unlike a loop, lets the compiler fuse it: on a GPU an inner while loop costs a host round trip per
    # iteration, which made each training step several times slower
    static_width = left.shape[2] if left.shape[2] is not None else right.shape[1]
    if static_width is not None:
        total = partial[:, 0]
        for index in range(1, static_width // REDUCTION_CHUNK):
            total = total + partial[:, index]
        return total

    def add_chunk(index: Tensor, total: Tensor) -> Tensor:
        return total + ops.take(partial, index, axis=1)

    return ops.fori_loop(1, ops.shape(partial)[1], add_chunk, ops.take(partial, 0, axis=1))


def _inputs(spec: CoreSpec, rows: Tensor, input_indices: Tensor, models: Tensor) -> Tensor:
    """(P, M, K0) inputs of every model: its kept features (zero column for padding), or all of them."""
    if spec.pruned[0]:
        gathered = ops.take(rows, input_indices, axis=1)  # (M, P, K0)
        return ops.transpose(gathered, (1, 0, 2))
    features = rows[:, :-1]
    return ops.broadcast_to(ops.expand_dims(features, 0), (models, *ops.shape(features)))


def batch_sum(values: Tensor) -> Tensor:
    """Sum over axis 1 of (P, B, X) as a batched matmul with ones.

    A plain reduction's order can depend on how many models share the batch (measured on the TF CPU
    backend with 10 classes); a batched matmul computes each model's slice identically. Both sides keep
    at least two rows and two columns: with one model XLA drops the model axis, and a product that is
    then a vector (one row of ones, or one column of values) goes to its matrix-vector emitter, whose
    summation order differs from the matrix product's (measured under TF-XLA;
    tests/workers/evaluation/test_company.py).
    """
    columns = ops.shape(values)[2]
    if columns == 1:
        values = ops.concatenate([values, values], axis=2)
    ones = ops.ones((ops.shape(values)[0], 2, ops.shape(values)[1]), dtype=values.dtype)
    return ops.matmul(ones, values)[:, 0, :columns]


def _split(spec: CoreSpec, params: tuple[Tensor, ...]) -> tuple[list[Tensor], list[Tensor], Tensor]:
    layers = spec.hidden_count + 1
    kernels = list(params[:layers])
    hidden_biases = list(params[layers:-1]) if spec.hidden_bias else []
    return kernels, hidden_biases, params[-1]


def forward(spec: CoreSpec, params: tuple[Tensor, ...], inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits (P, M, C) and the per-layer activations and pre-activations needed for backprop."""
    kernels, hidden_biases, output_bias = _split(spec, params)
    activation = inputs
    saved = [activation]
    for layer in range(spec.hidden_count):
        pre_activation = chunked_matmul(activation, kernels[layer], spec.pruned[layer])
        if spec.hidden_bias:
            pre_activation = pre_activation + ops.expand_dims(hidden_biases[layer], 1)
        activation = ops.relu(pre_activation)
        saved.append(activation)
    logits = chunked_matmul(activation, kernels[-1], spec.pruned[-1]) + ops.expand_dims(output_bias, 1)
    return logits, saved


def logits_for(spec: CoreSpec, params: tuple[Tensor, ...], rows: Tensor, input_indices: Tensor) -> Tensor:
    """Logits (P, M, C) of every model on M rows of (zero-column-extended) features."""
    models = ops.shape(params[-1])[0]
    logits, _ = forward(spec, params, _inputs(spec, rows, input_indices, models))
    return logits


def _gradients(
    spec: CoreSpec, params: tuple[Tensor, ...], saved: list[Tensor], logit_gradient: Tensor
) -> list[Tensor]:
    kernels, _, _ = _split(spec, params)
    kernel_grads: list[Tensor] = [None] * len(kernels)
    bias_grads: list[Tensor] = [None] * spec.hidden_count
    gradient = logit_gradient
    output_bias_grad = batch_sum(gradient)
    for layer in range(spec.hidden_count, -1, -1):
        kernel_grads[layer] = ops.matmul(ops.transpose(saved[layer], (0, 2, 1)), gradient)
        if layer == 0:
            break
        # The sum runs over this layer's output width: position layer + 1, or the classes.
        output_chunked = layer < spec.hidden_count and spec.pruned[layer + 1]
        back = chunked_matmul(gradient, ops.transpose(kernels[layer], (0, 2, 1)), output_chunked)
        # ReLU passes gradient where its output is positive; padded units stay at exactly zero.
        gradient = back * ops.cast(saved[layer] > 0, back.dtype)
        if spec.hidden_bias:
            bias_grads[layer - 1] = batch_sum(gradient)
    return [*kernel_grads, *(bias_grads if spec.hidden_bias else []), output_bias_grad]


def _sgd(
    spec: CoreSpec, params: tuple[Tensor, ...], momenta: tuple[Tensor, ...], grads: list[Tensor], step: Tensor
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Keras SGD with inverse-time decay: m = μm - ηg; w += μm - ηg (Nesterov) or w += m."""
    rate = spec.learning_rate / (1.0 + spec.decay * ops.cast(step, "float32"))
    new_params = []
    new_momenta = []
    for weight, velocity, grad in zip(params, momenta, grads, strict=True):
        if spec.momentum == 0.0:
            new_params.append(weight - rate * grad)
            new_momenta.append(velocity)
            continue
        velocity = velocity * spec.momentum - grad * rate
        update = velocity * spec.momentum - grad * rate if spec.nesterov else velocity
        new_params.append(weight + update)
        new_momenta.append(velocity)
    return tuple(new_params), tuple(new_momenta)


def train_epoch(
    spec: CoreSpec,
    params: tuple[Tensor, ...],
    momenta: tuple[Tensor, ...],
    features: Tensor,
    targets: Tensor,
    order: Tensor,
    sample_weights: Tensor,
    input_indices: Tensor,
    first_step: Tensor,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]:
    """One epoch of minibatch SGD for all P models on the same batch sequence.

    Args:
        spec: static facts.
        params: kernels, hidden biases, output bias; each with a leading model axis.
        momenta: SGD velocities shaped like params.
        features: (N + 1, D + 1) features with a zero row and a zero column appended for padding.
        targets: (N + 1, C) one-hot labels.
        order: (batches, batch_size) sample indices; padding points at the zero row.
        sample_weights: (batches, batch_size) 1 for real samples, 0 for padding.
        input_indices: (P, K0) kept feature indices per model (the zero column for padding).
        first_step: optimizer iterations before this epoch (drives the learning-rate decay).

    Returns:
        Updated params and momenta, and each model's summed training loss over the epoch (P,): float32,
        or float64 summed as Keras 2 did under `spec.float64_loss`.
    """
    models = ops.shape(params[-1])[0]
    batch_count = ops.shape(order)[0]

    def step(batch: Tensor, carry: tuple) -> tuple:
        current, velocities, loss_total = carry
        indices = ops.take(order, batch, axis=0)
        weights = ops.take(sample_weights, batch, axis=0)
        rows = ops.take(features, indices, axis=0)
        labels = ops.take(targets, indices, axis=0)
        logits, saved = forward(spec, current, _inputs(spec, rows, input_indices, models))
        log_probabilities = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
        error = ops.exp(log_probabilities) - labels  # the softmax cross-entropy's gradient on the logits
        if spec.clipped_loss:
            # Keras 2: -log(clip(p_true, 1e-7, 1 - 1e-7)); the clip passes no gradient outside its bounds
            # (tf.clip_by_value's rule), so a saturated or confidently wrong sample stops learning.
            true_probability = ops.exp(ops.sum(log_probabilities * labels, axis=-1))  # (P, B)
            losses = -ops.log(ops.clip(true_probability, CLIP_LOW, CLIP_HIGH))
            inside = ops.logical_and(true_probability >= CLIP_LOW, true_probability <= CLIP_HIGH)
            error = error * ops.expand_dims(ops.cast(inside, error.dtype), -1)
        else:
            losses = -ops.sum(log_probabilities * labels, axis=-1)  # (P, B)
        count = ops.sum(weights)
        loss_total = add_batch_loss(
            spec, loss_total, batch_sum(ops.expand_dims(losses * weights, -1))[:, 0], count
        )
        # Keras averages the batch loss over the real samples; the gradient of that mean:
        scale = weights / count
        logit_gradient = error * ops.expand_dims(scale, -1)
        grads = _gradients(spec, current, saved, logit_gradient)
        current, velocities = _sgd(spec, current, velocities, grads, first_step + batch)
        return current, velocities, loss_total

    initial = (tuple(params), tuple(momenta), ops.zeros((models,), dtype=loss_dtype(spec)))
    final_params, final_momenta, loss_total = ops.fori_loop(0, batch_count, step, initial)
    return final_params, final_momenta, loss_total


def add_batch_loss(spec: CoreSpec, loss_total: Tensor, batch_loss: Tensor, count: Tensor) -> Tensor:
    """The epoch's loss total after one more batch.

    Args:
        spec: static facts (`float64_loss` picks the arithmetic).
        loss_total: (P,) the total so far, in `loss_dtype(spec)`.
        batch_loss: (P,) float32 sum of the batch's per-sample losses.
        count: float32 scalar, the batch's real samples.

    Returns:
        (P,) float32 total + batch sum; or, under `float64_loss`, Keras 2's BaseLogger arithmetic: the float32
        batch mean, times the batch size, added in float64.
    """
    if spec.float64_loss:
        return loss_total + ops.cast(batch_loss / count, "float64") * ops.cast(count, "float64")
    return loss_total + batch_loss


def loss_dtype(spec: CoreSpec) -> str:
    """The dtype of the epoch loss totals and of early stopping's comparison."""
    return "float64" if spec.float64_loss else "float32"


def select_models(keep_new: Tensor, new: tuple[Tensor, ...], old: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Per model, `new` where keep_new[p] else `old` (the best-weights snapshot of early stopping)."""
    selected = []
    for fresh, previous in zip(new, old, strict=True):
        condition = ops.reshape(keep_new, (-1,) + (1,) * (len(fresh.shape) - 1))
        selected.append(ops.where(condition, fresh, previous))
    return tuple(selected)
