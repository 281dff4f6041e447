"""The host's early-stopping rule against keras.callbacks.EarlyStopping on the same loss sequences."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune.workers.early_stopping import EarlyStoppingState, mean_epoch_loss


class _Model:
    """What EarlyStopping touches on a model."""

    def __init__(self) -> None:
        self.metrics: list = []
        self.stop_training = False

    def get_weights(self) -> list:
        return []


def _keras_stop_epoch(losses: list[float], min_delta: float, patience: int) -> int | None:
    callback = keras.callbacks.EarlyStopping(monitor="loss", min_delta=min_delta, patience=patience)
    model = _Model()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(epoch, {"loss": loss})
        if model.stop_training:
            return epoch
    return None


def _host_stop_epoch(losses: list[float], min_delta: float, patience: int) -> int | None:
    state = EarlyStoppingState(min_delta, patience)
    for epoch, loss in enumerate(losses):
        state.observe(np.float32(loss))
        if state.should_stop(epoch):
            return epoch
    return None


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_stops_at_the_same_epoch_as_keras(patience: int, seed: int) -> None:
    # a decreasing loss whose steps straddle min_delta, with plateaus and bumps; float32 values as Keras
    # logs them (values near min_delta's edge are avoided: there float32 and Keras's float64 may differ)
    generator = np.random.default_rng(seed)
    steps = generator.choice([0.0, 0.004, 0.02, 0.05, -0.03], size=30, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    losses = [float(np.float32(value)) for value in 2.0 - np.cumsum(steps)]
    assert _host_stop_epoch(losses, 0.01, patience) == _keras_stop_epoch(losses, 0.01, patience)


def test_mean_epoch_loss_is_float32() -> None:
    assert mean_epoch_loss(np.float32(10.0), 3) == np.float32(10.0) / np.float32(3.0)
    assert isinstance(mean_epoch_loss(10.0, 3), np.float32)
