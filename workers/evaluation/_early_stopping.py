"""Early stopping on the training loss as Keras's EarlyStopping does it, and when stopped models leave."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mean_epoch_loss(loss_total: float | np.floating, size: int, float64: bool = False) -> np.floating:
    """The epoch's mean training loss as early stopping compares it.

    Float32 by default: float32(total) / float32(size). The fused path (workers/evaluation/_fused.py) decides
    on the device, and IEEE float32 division and addition give the same bits in numpy and in every backend,
    so the host and the device stop at the same epoch. With `float64` (early_stopping.decision
    keras2_float64) the total is Keras 2's float64 sum of batch means times batch sizes, divided by the
    sample count in float64 as its BaseLogger did; the device then computes in float64 too (JAX in x64 mode
    for that call).

    Args:
        loss_total: the epoch's summed loss, as the training call returned it.
        size: the number of training samples.
        float64: the Keras 2 decision's arithmetic.

    Returns:
        The mean loss, np.float32 or np.float64.
    """
    if float64:
        return np.float64(loss_total) / np.float64(size)
    return np.float32(loss_total) / np.float32(size)


@dataclass
class EarlyStoppingState:
    """One model's Keras EarlyStopping(monitor="loss") bookkeeping, in float32 (or float64 as Keras 2).

    Keras counts an improvement when loss + min_delta < best (the first epoch always improves), remembers
    the weights of that epoch, and stops after an epoch without improvement once `patience` epochs in a
    row brought none (never at epoch 0). `workers/evaluation/_fused.py` implements the same rule in tensors.
    With `float64`, the comparison is Keras 2's `current - (-min_delta) < best` on float64 values.
    """

    min_delta: float
    patience: int
    float64: bool = False
    best: np.floating | None = None
    wait: int = 0
    retired: bool = False
    improved_last: bool = False

    def observe(self, loss: np.floating) -> bool:
        """Records an epoch's mean loss (from `mean_epoch_loss`); True when its weights become the best."""
        if self.retired:
            return False
        self.wait += 1
        kind = np.float64 if self.float64 else np.float32
        loss = kind(loss)
        self.improved_last = self.best is None or bool(loss + kind(self.min_delta) < self.best)
        if self.improved_last:
            self.best = loss
            self.wait = 0
        return self.improved_last

    def should_stop(self, epoch: int) -> bool:
        """Whether training stops after `epoch` (0-based): Keras checks patience only when not improved."""
        return not self.retired and not self.improved_last and self.wait >= self.patience and epoch > 0

    def retire(self) -> None:
        """Marks a model whose result is taken but which still rides along in the batch."""
        self.retired = True


def should_compact(remaining: int, width: int, fixed_shapes: bool) -> bool:
    """Whether to rebuild the batch without its stopped models now.

    Args:
        remaining: models still training.
        width: models in the current computation.
        fixed_shapes: the backend compiles one program per shape (JAX), so rebuilding costs a compile.

    Returns:
        True to drop stopped models now. Graph backends rebuild at once; a compiling backend waits until a
        quarter of the width is idle, which bounds compiles to O(log P) while wasting < 25 % of the work.
    """
    if remaining >= width:
        return False
    if not fixed_shapes:
        return True
    return remaining <= (3 * width) // 4
