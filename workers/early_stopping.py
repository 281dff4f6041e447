"""Early stopping on the training loss as Keras's EarlyStopping does it, and when stopped models leave."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStoppingState:
    """One model's Keras EarlyStopping(monitor="loss") bookkeeping.

    Keras counts an improvement when loss < best - min_delta, remembers the weights of that epoch, and
    stops once `patience` epochs in a row brought none (never at epoch 0).
    """

    min_delta: float
    patience: int
    best: float | None = None
    wait: int = 0
    retired: bool = False

    def observe(self, loss: float) -> bool:
        """Records an epoch's loss; True when this epoch's weights become the best ones."""
        if self.retired:
            return False
        self.wait += 1
        if self.best is None or loss < self.best - self.min_delta:
            self.best = float(loss)
            self.wait = 0
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        """Whether training stops after `epoch` (0-based)."""
        return not self.retired and self.wait >= self.patience and epoch > 0

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
