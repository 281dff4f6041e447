"""The host's early-stopping rule against keras.callbacks.EarlyStopping on the same loss sequences."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evoprune.workers.evaluation._early_stopping import EarlyStoppingState, mean_epoch_loss


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


# -- the Keras 2 decision (early_stopping.decision keras2_float64) ------------------------------------------


def _keras2_stop_epoch(batch_sums: np.ndarray, counts: list[int], min_delta: float, patience: int):
    """Keras 2.2.4's decision, transcribed from its described behaviour (BaseLogger.on_batch_end adds the
    float32 batch loss times the batch size to a float64 total and on_epoch_end divides by the samples seen;
    EarlyStopping.on_epoch_end tests `current - (-min_delta) < best` in float64, best starting at +inf).
    Python floats are float64, so nothing here can round to float32."""
    best, wait = float("inf"), 0
    for epoch, sums in enumerate(batch_sums):
        total = 0.0
        for batch_sum, count in zip(sums, counts, strict=True):
            total += float(np.float32(batch_sum) / np.float32(count)) * count  # the float32 batch mean
        current = total / sum(counts)
        if current - (-min_delta) < best:
            best, wait = current, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None


def _edge_cases(count: int, seed: int) -> list[tuple[np.ndarray, list[int]]]:
    """Two-epoch loss sequences whose second epoch mean lies within a few ulps of best - min_delta.

    The first epoch's batch sums are random; the second epoch's are the first's less min_delta's share,
    then the last batch sum is moved by -4..4 float32 ulps, which walks the epoch mean across the edge.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        counts = [32] * int(rng.integers(2, 40)) + [int(rng.integers(1, 33))]
        first = (rng.uniform(0.05, 3.0, len(counts)) * counts).astype(np.float32)
        second = (first - np.float32(1e-5) * np.array(counts, np.float32)).astype(np.float32)
        for step in range(-4, 5):
            moved = second.copy()
            for _ in range(abs(step)):
                moved[-1] = np.nextafter(moved[-1], np.float32(np.inf if step > 0 else -np.inf))
            # a third epoch equal to the second: with patience 1 it stops there unless epoch 2 improved
            cases.append((np.stack([first, moved, moved]), counts))
    return cases


def _host_keras2_stop_epoch(batch_sums: np.ndarray, counts: list[int], min_delta: float, patience: int):
    state = EarlyStoppingState(min_delta, patience, float64=True)
    for epoch, sums in enumerate(batch_sums):
        total = np.float64(0.0)
        for batch_sum, count in zip(sums, counts, strict=True):
            total += np.float64(np.float32(batch_sum) / np.float32(count)) * np.float64(count)
        state.observe(mean_epoch_loss(total, sum(counts), float64=True))
        if state.should_stop(epoch):
            return epoch
    return None


def _float32_stop_epoch(batch_sums: np.ndarray, counts: list[int], min_delta: float, patience: int):
    state = EarlyStoppingState(min_delta, patience)
    for epoch, sums in enumerate(batch_sums):
        state.observe(mean_epoch_loss(np.float32(np.sum(sums, dtype=np.float32)), sum(counts)))
        if state.should_stop(epoch):
            return epoch
    return None


def test_host_keras2_decision_equals_the_float64_oracle_at_the_edge() -> None:
    cases = _edge_cases(60, seed=1)
    oracle = [_keras2_stop_epoch(sums, counts, 1e-5, 1) for sums, counts in cases]
    assert [_host_keras2_stop_epoch(sums, counts, 1e-5, 1) for sums, counts in cases] == oracle
    # the cases do sit on the edge: epoch 1 improves in some (then epoch 2 stops) and not in others, and
    # the float32 rule decides some differently
    assert set(oracle) == {1, 2}
    float32 = [_float32_stop_epoch(sums, counts, 1e-5, 1) for sums, counts in cases]
    assert sum(a != b for a, b in zip(float32, oracle, strict=True)) >= 20


DEVICE_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import numpy as np
from keras import ops
from evoprune.workers.evaluation import _fused, _head_core
from evoprune.workers.backend import compile_function
from tests.workers.evaluation.test_early_stopping import _edge_cases

spec = _head_core.CoreSpec((True, False), False, 1e-3, 0.9, True, 1e-6, float64_loss=True)
stopping = _fused.StoppingSpec(True, 1e-5, 1, True, keeps_best=True, freezes_stopped=False)


cases = _edge_cases(60, seed=1)
epochs = 3
batches = max(len(counts) for _, counts in cases)
# every case is one model of one batch; missing batches add a zero sum over a count of 1, i.e. exactly 0.0
sums = np.zeros((len(cases), epochs, batches), np.float32)
counts = np.ones((len(cases), batches), np.float32)
for row, (case_sums, case_counts) in enumerate(cases):
    sums[row, :, : len(case_counts)] = case_sums
    counts[row, : len(case_counts)] = case_counts
sizes = np.array([sum(case_counts) for _, case_counts in cases], np.float32)


def decide(batch_sums, counts, size):
    models = len(cases)
    best_loss = ops.zeros((models,), "float64") + ops.cast(np.inf, "float64")
    wait = ops.zeros((models,), "int32")
    stopped = ops.zeros((models,), "bool")
    stop_epoch = ops.zeros((models,), "int32")
    min_delta = ops.convert_to_tensor(np.float64(1e-5))
    for epoch in range(epochs):
        total = ops.zeros((models,), "float64")
        for batch in range(batches):
            total = _head_core.add_batch_loss(spec, total, batch_sums[:, epoch, batch], counts[:, batch])
        mean = total / ops.cast(size, "float64")
        _, best_loss, wait, stopped, stop_epoch = _fused.stopping_step(
            stopping, ops.convert_to_tensor(np.int32(epoch)), mean, min_delta, best_loss, wait, stopped,
            stop_epoch,
        )
    return stopped, stop_epoch


stopped, stop_epoch = compile_function(decide, x64=True)(sums, counts, sizes)
stopped, stop_epoch = np.asarray(ops.convert_to_numpy(stopped)), np.asarray(ops.convert_to_numpy(stop_epoch))
results = [int(epoch) if flag else None for flag, epoch in zip(stopped, stop_epoch)]
print(json.dumps(results))
"""


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.jax)])
def test_device_keras2_decision_equals_the_float64_oracle_at_the_edge(backend: str) -> None:
    """The fused path's pieces (the batch-loss sum and the stopping step), compiled, on the edge cases."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if backend == "jax":
        pytest.importorskip("jax")
    root = Path(__file__).resolve().parents[3]
    completed = subprocess.run(
        [sys.executable, "-c", DEVICE_SCRIPT.format(root=str(root))],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"},
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    device = json.loads(completed.stdout.strip().splitlines()[-1])
    oracle = [_keras2_stop_epoch(sums, counts, 1e-5, 1) for sums, counts in _edge_cases(60, seed=1)]
    assert device == oracle
