"""Many epochs in one compiled call: the epoch loop and early stopping of P masked heads on the device.

The host path (`BatchedEvaluator` with `epochs_per_call=1`) trains one epoch per call and keeps early
stopping in `EarlyStoppingState`; this module runs the same epochs and the same float32 stopping rule inside
one computation, so the host is involved only between calls. Each epoch is exactly `_head_core.train_epoch`
and the bookkeeping is the host's rule written in tensors, which is what keeps the two paths bitwise equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from evoprune.workers.evaluation import _head_core

Tensor = Any


@dataclass(frozen=True)
class StoppingSpec:
    """The static early-stopping facts a fused call is specialised on."""

    enabled: bool
    min_delta: float
    patience: int
    float64: bool  # early_stopping.decision keras2_float64: the loss and its comparison in float64
    keeps_best: bool  # whether any result can come from the best-epoch snapshot (else it is not kept)
    freezes_stopped: bool  # a stopped model's result is its last params (restore "never"), so keep them


@dataclass
class StoppingTensors:
    """Per-model early-stopping state, kept on the device between calls.

    best_loss: (P,) float32 (float64 under the Keras 2 decision), the lowest mean epoch loss that counted
        as an improvement.
    wait: (P,) int32, epochs since the last improvement (Keras's `wait`).
    stopped: (P,) bool, the patience rule fired; the model's result no longer changes.
    stop_epoch: (P,) int32, the 0-based epoch at which the rule fired (meaningless where not stopped).
    """

    best_loss: Tensor
    wait: Tensor
    stopped: Tensor
    stop_epoch: Tensor

    @classmethod
    def initial(cls, models: int, float64: bool = False) -> StoppingTensors:
        """The state before the first epoch, as host arrays (the compiled call puts them on the device).

        Host arrays rather than tensors: a float64 array stays float64 only when JAX converts it inside
        the call's x64 scope (workers/backend.py).
        """
        return cls(
            np.full(models, np.inf, dtype=np.float64 if float64 else np.float32),
            np.zeros(models, dtype=np.int32),
            np.zeros(models, dtype=bool),
            np.zeros(models, dtype=np.int32),
        )

    def as_tuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.best_loss, self.wait, self.stopped, self.stop_epoch

    def take(self, rows: np.ndarray) -> StoppingTensors:
        """The state of the given models only (the batch after compaction), as host arrays."""
        return StoppingTensors(*(np.asarray(ops.convert_to_numpy(t))[rows] for t in self.as_tuple()))


def train_epochs(
    spec: _head_core.CoreSpec,
    stopping: StoppingSpec,
    params: tuple[Tensor, ...],
    momenta: tuple[Tensor, ...],
    best: tuple[Tensor, ...],
    state: tuple[Tensor, Tensor, Tensor, Tensor],
    features: Tensor,
    targets: Tensor,
    orders: Tensor,
    sample_weights: Tensor,
    input_indices: Tensor,
    size: Tensor,
    first_epoch: Tensor,
    epoch_limit: Tensor,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Up to K epochs of every model, with early stopping, in one computation.

    The loop ends after K epochs, at `epoch_limit`, or as soon as every model has stopped. What a stopped
    model leaves behind cannot change while it rides along with the others: its best snapshot no longer
    updates, and where its last params are its result (restore "never") they are frozen.

    Args:
        spec: static facts of the core.
        stopping: static early-stopping facts.
        params: kernels, hidden biases, output bias; leading model axis.
        momenta: SGD velocities shaped like params.
        best: the best-epoch snapshot of params (early stopping's restore).
        state: `StoppingTensors.as_tuple()`.
        features: (N + 1, D + 1) features with a zero row and column for padding.
        targets: (N + 1, C) one-hot labels.
        orders: (K, batches, batch_size) int32, epoch `first_epoch + k`'s batch sequence in row k.
        sample_weights: (batches, batch_size) 1 for real samples, 0 for padding (the same every epoch).
        input_indices: (P, K0) kept feature indices per model.
        size: float32 scalar, the real training samples (the divisor of the mean epoch loss; widened to
            float64 under the Keras 2 decision, where it is exact).
        first_epoch: int32 scalar, the 0-based epoch of `orders[0]`.
        epoch_limit: int32 scalar, the protocol's max_epochs: no epoch at or beyond it runs.

    Returns:
        params, momenta, best and state after the call.
    """
    batch_count = ops.shape(orders)[1]
    epochs_in_call = ops.shape(orders)[0]
    # The same operands as EarlyStoppingState on the host (float32, or float64 for the Keras 2 decision),
    # so both paths decide identically.
    kind = np.float64 if stopping.float64 else np.float32
    min_delta = ops.convert_to_tensor(kind(stopping.min_delta))

    def running(k: Tensor, params, momenta, best, best_loss, wait, stopped, stop_epoch) -> Tensor:
        return ops.logical_and(
            ops.logical_and(k < epochs_in_call, first_epoch + k < epoch_limit),
            ops.any(ops.logical_not(stopped)),
        )

    def epoch_body(k: Tensor, params, momenta, best, best_loss, wait, stopped, stop_epoch) -> tuple:
        epoch = first_epoch + k
        order = ops.take(orders, k, axis=0)
        trained, velocities, loss_total = _head_core.train_epoch(
            spec,
            params,
            momenta,
            features,
            targets,
            order,
            sample_weights,
            input_indices,
            epoch * batch_count,
        )
        active = ops.logical_not(stopped)
        # A stopped model's result is its best snapshot, which stops changing with it, unless restore is
        # "never": only then are its params frozen. Freezing costs a pass over every model's state, which
        # measured 10-15 % of an epoch on CPU, so it runs only once some model has stopped.
        if stopping.freezes_stopped:
            params, momenta = ops.cond(
                ops.any(stopped),
                lambda: (
                    _head_core.select_models(active, trained, params),
                    _head_core.select_models(active, velocities, momenta),
                ),
                lambda: (tuple(trained), tuple(velocities)),
            )
        else:
            params, momenta = tuple(trained), tuple(velocities)
        mean_loss = loss_total / ops.cast(size, loss_total.dtype)
        improved, best_loss, wait, stopped, stop_epoch = stopping_step(
            stopping, epoch, mean_loss, min_delta, best_loss, wait, stopped, stop_epoch
        )
        if stopping.keeps_best:
            best = _head_core.select_models(improved, params, best)
        return k + 1, params, momenta, best, best_loss, wait, stopped, stop_epoch

    zero = ops.convert_to_tensor(np.int32(0))
    outputs = ops.while_loop(running, epoch_body, (zero, tuple(params), tuple(momenta), tuple(best), *state))
    _, params, momenta, best, *final_state = outputs
    best_loss, wait, stopped, stop_epoch = final_state
    return tuple(params), tuple(momenta), tuple(best), (best_loss, wait, stopped, stop_epoch)


def stopping_step(
    stopping: StoppingSpec,
    epoch: Tensor,
    mean_loss: Tensor,
    min_delta: Tensor,
    best_loss: Tensor,
    wait: Tensor,
    stopped: Tensor,
    stop_epoch: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Early stopping's bookkeeping after one epoch, for every model: `EarlyStoppingState` in tensors.

    Args:
        stopping: static early-stopping facts.
        epoch: int32 scalar, the 0-based epoch just trained.
        mean_loss: (P,) the epoch's mean loss, in the dtype of `best_loss`.
        min_delta: scalar of that dtype.
        best_loss: the state before the epoch (`StoppingTensors`), as are the next three.
        wait: epochs since the last improvement.
        stopped: whether the rule has fired.
        stop_epoch: the epoch at which it fired.

    Returns:
        (improved, best_loss, wait, stopped, stop_epoch): which models improved, and the new state.
    """
    active = ops.logical_not(stopped)
    # Keras: improvement iff loss + min_delta < best, and the first epoch always improves.
    better = ops.logical_or(epoch == 0, mean_loss + min_delta < best_loss)
    improved = ops.logical_and(active, better)
    best_loss = ops.where(improved, mean_loss, best_loss)
    wait = ops.where(improved, ops.zeros_like(wait), ops.where(active, wait + 1, wait))
    if stopping.enabled:
        patience_spent = ops.logical_and(wait >= stopping.patience, epoch > 0)
        stop_now = ops.logical_and(ops.logical_and(active, ops.logical_not(improved)), patience_spent)
        stopped = ops.logical_or(stopped, stop_now)
        stop_epoch = ops.where(stop_now, ops.zeros_like(stop_epoch) + epoch, stop_epoch)
    return improved, best_loss, wait, stopped, stop_epoch


def epoch_orders(order_for_epoch: Any, first_epoch: int, epochs_in_call: int, max_epochs: int) -> np.ndarray:
    """The (K, batches, batch_size) batch sequences of one call; rows past max_epochs repeat the last one.

    Args:
        order_for_epoch: epoch -> (batches, batch_size) int32 order (the host path's own generator).
        first_epoch: epoch of the first row.
        epochs_in_call: K, fixed per evaluator so every call has one shape (one compile).
        max_epochs: rows at or beyond it never run; they are filled only to keep the shape.

    Returns:
        The stacked int32 orders.
    """
    last = min(first_epoch + epochs_in_call, max_epochs)
    rows = [order_for_epoch(epoch) for epoch in range(first_epoch, last)]
    rows += [rows[-1]] * (epochs_in_call - len(rows))
    return np.stack(rows).astype(np.int32)
