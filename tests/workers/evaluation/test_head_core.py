"""The numerical core against a hand-computed Keras-2 SGD/Nesterov step with inverse-time decay."""

from __future__ import annotations

import numpy as np
from keras import ops

from evoprune.workers.evaluation import _head_core

LEARNING_RATE, MOMENTUM, DECAY = 0.1, 0.9, 1e-6
STEP = 1_000_000  # decay 1e-6 at iteration 10^6 halves the rate: a dropped decay doubles every update
BATCH, INPUTS, HIDDEN, CLASSES = 4, 6, 5, 3


def _problem() -> dict[str, np.ndarray]:
    generator = np.random.default_rng(11)
    features = generator.standard_normal((BATCH, INPUTS)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    return {
        "features": features,
        "targets": np.eye(CLASSES, dtype=np.float32)[labels],
        "kernel_0": (generator.standard_normal((INPUTS, HIDDEN)) / 2).astype(np.float32),
        "kernel_1": (generator.standard_normal((HIDDEN, CLASSES)) / 2).astype(np.float32),
        "bias": (generator.standard_normal(CLASSES) / 10).astype(np.float32),
        # non-zero velocities, so Nesterov's look-ahead and plain momentum give different steps
        "velocities": [
            (generator.standard_normal(shape) / 100).astype(np.float32)
            for shape in ((INPUTS, HIDDEN), (HIDDEN, CLASSES), (CLASSES,))
        ],
    }


def _keras2_step(problem: dict[str, np.ndarray], real: int) -> list[np.ndarray]:
    """Keras 2's SGD(lr, momentum, decay, nesterov=True) on the mean loss of the first `real` samples.

    lr_t = lr / (1 + decay · iterations); v = μv − lr_t·g; w += μv − lr_t·g. In float64.
    """
    x = problem["features"][:real].astype(np.float64)
    y = problem["targets"][:real].astype(np.float64)
    kernel_0, kernel_1 = problem["kernel_0"].astype(np.float64), problem["kernel_1"].astype(np.float64)
    bias = problem["bias"].astype(np.float64)
    pre_activation = x @ kernel_0
    hidden = np.maximum(pre_activation, 0.0)
    logits = hidden @ kernel_1 + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    logit_gradient = (probabilities - y) / real  # gradient of the batch's mean cross-entropy
    hidden_gradient = (logit_gradient @ kernel_1.T) * (pre_activation > 0)
    gradients = [x.T @ hidden_gradient, hidden.T @ logit_gradient, logit_gradient.sum(axis=0)]
    rate = LEARNING_RATE / (1.0 + DECAY * STEP)
    updated = []
    for weight, velocity, gradient in zip(
        (kernel_0, kernel_1, bias), problem["velocities"], gradients, strict=True
    ):
        velocity = MOMENTUM * velocity.astype(np.float64) - rate * gradient
        updated.append(weight + MOMENTUM * velocity - rate * gradient)
    return updated


def test_one_step_at_a_large_iteration_matches_keras2_nesterov_with_decay() -> None:
    problem = _problem()
    real = 3  # the last, short batch: one padded slot with weight 0 must not dilute the mean
    spec = _head_core.CoreSpec(
        pruned=(False, False),
        hidden_bias=False,
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
        nesterov=True,
        decay=DECAY,
    )
    # the padding row and column the evaluator appends; the batch's fourth slot points at the zero row
    features = np.zeros((BATCH + 1, INPUTS + 1), dtype=np.float32)
    features[:BATCH, :INPUTS] = problem["features"]
    targets = np.zeros((BATCH + 1, CLASSES), dtype=np.float32)
    targets[:BATCH] = problem["targets"]
    order = np.array([[0, 1, 2, BATCH]], dtype=np.int32)
    weights = np.array([[1.0, 1.0, 1.0, 0.0]], dtype=np.float32)
    params = tuple(ops.convert_to_tensor(problem[name][None]) for name in ("kernel_0", "kernel_1", "bias"))
    momenta = tuple(ops.convert_to_tensor(velocity[None]) for velocity in problem["velocities"])
    new_params, _, _ = _head_core.train_epoch(
        spec,
        params,
        momenta,
        ops.convert_to_tensor(features),
        ops.convert_to_tensor(targets),
        ops.convert_to_tensor(order),
        ops.convert_to_tensor(weights),
        ops.convert_to_tensor(np.zeros((1, 0), dtype=np.int32)),
        ops.convert_to_tensor(np.int32(STEP)),
    )
    expected = _keras2_step(problem, real)
    before = [problem["kernel_0"], problem["kernel_1"], problem["bias"]]
    for ours, theirs, old in zip(new_params, expected, before, strict=True):
        ours = np.asarray(ops.convert_to_numpy(ours))[0].astype(np.float64)
        # compare the updates themselves: a wrong rate, momentum rule or batch mean changes them by ≥ 10 %
        np.testing.assert_allclose(ours - old, theirs - old, rtol=1e-4, atol=1e-7)


def _clipped_problem() -> dict:
    """Six samples through an identity hidden layer: sample k excites hidden unit k, which votes for class
    k % 3. Samples 0-1 are saturated and right (p_true ≈ 1 - 1e-17), 2-3 confidently wrong (p_true ≈ 4e-18),
    4-5 ordinary; both clipped kinds lie far outside [1e-7, 1 - 1e-7] in float32 and float64 alike."""
    magnitudes = np.array([40.0, 40.0, 40.0, 40.0, 1.0, 0.5], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 1, 2])
    features = np.diag(magnitudes).astype(np.float32)
    generator = np.random.default_rng(3)
    return {
        "features": features,
        "targets": np.eye(3, dtype=np.float32)[labels],
        "kernel_0": np.eye(6, dtype=np.float32),
        "kernel_1": np.eye(3, dtype=np.float32)[np.arange(6) % 3],
        "bias": np.zeros(3, dtype=np.float32),
        "velocities": [
            (generator.standard_normal(shape) / 100).astype(np.float32) for shape in ((6, 6), (6, 3), (3,))
        ],
    }


def _keras2_clipped_step(problem: dict) -> tuple[list[np.ndarray], float]:
    """Keras 2's categorical cross-entropy on a softmax output, by TensorFlow's autodiff in float64:
    normalise by the sum, clip to [1e-7, 1 - 1e-7] (as float32 numbers, as Keras 2 converted its epsilon),
    -sum(y log p); then one SGD/Nesterov step with inverse-time decay as `_keras2_step`."""
    import tensorflow as tf

    low, high = float(np.float32(1e-7)), float(np.float32(1 - 1e-7))
    variables = [tf.Variable(problem[name].astype(np.float64)) for name in ("kernel_0", "kernel_1", "bias")]
    x = tf.constant(problem["features"].astype(np.float64))
    y = tf.constant(problem["targets"].astype(np.float64))
    with tf.GradientTape() as tape:
        logits = tf.nn.relu(x @ variables[0]) @ variables[1] + variables[2]
        output = tf.nn.softmax(logits)
        output = output / tf.reduce_sum(output, axis=-1, keepdims=True)
        losses = -tf.reduce_sum(y * tf.math.log(tf.clip_by_value(output, low, high)), axis=-1)
        mean = tf.reduce_mean(losses)
    gradients = tape.gradient(mean, variables)
    rate = LEARNING_RATE / (1.0 + DECAY * STEP)
    updated = []
    for variable, velocity, gradient in zip(variables, problem["velocities"], gradients, strict=True):
        velocity = MOMENTUM * velocity.astype(np.float64) - rate * gradient.numpy()
        updated.append(variable.numpy() + MOMENTUM * velocity - rate * gradient.numpy())
    return updated, float(tf.reduce_sum(losses))


def _core_step(problem: dict, clipped: bool) -> tuple[list[np.ndarray], float]:
    spec = _head_core.CoreSpec(
        (False, False), False, LEARNING_RATE, MOMENTUM, True, DECAY, clipped_loss=clipped
    )
    rows = len(problem["features"])
    features = np.zeros((rows + 1, 7), dtype=np.float32)
    features[:rows, :6] = problem["features"]
    targets = np.zeros((rows + 1, 3), dtype=np.float32)
    targets[:rows] = problem["targets"]
    params = tuple(ops.convert_to_tensor(problem[name][None]) for name in ("kernel_0", "kernel_1", "bias"))
    momenta = tuple(ops.convert_to_tensor(velocity[None]) for velocity in problem["velocities"])
    new_params, _, loss_total = _head_core.train_epoch(
        spec,
        params,
        momenta,
        ops.convert_to_tensor(features),
        ops.convert_to_tensor(targets),
        ops.convert_to_tensor(np.arange(rows, dtype=np.int32)[None]),
        ops.convert_to_tensor(np.ones((1, rows), dtype=np.float32)),
        ops.convert_to_tensor(np.zeros((1, 0), dtype=np.int32)),
        ops.convert_to_tensor(np.int32(STEP)),
    )
    arrays = [np.asarray(ops.convert_to_numpy(p))[0].astype(np.float64) for p in new_params]
    return arrays, float(np.asarray(ops.convert_to_numpy(loss_total))[0])


def test_clipped_loss_matches_keras2_autodiff_with_saturated_and_confidently_wrong_samples() -> None:
    problem = _clipped_problem()
    ours, our_loss = _core_step(problem, clipped=True)
    theirs, their_loss = _keras2_clipped_step(problem)
    before = [problem[name].astype(np.float64) for name in ("kernel_0", "kernel_1", "bias")]
    for mine, expected, old in zip(ours, theirs, before, strict=True):
        np.testing.assert_allclose(mine - old, expected - old, rtol=1e-4, atol=1e-7)
    # the loss is the clipped one: the saturated samples count -log(1 - 1e-7), the wrong ones -log(1e-7)
    assert abs(our_loss - their_loss) <= 1e-5 * their_loss
    assert their_loss > 2 * 16.1  # two confidently wrong samples at -log(1e-7) ≈ 16.1 each
    # the clip stops the clipped samples' learning: hidden units 0-3 (theirs alone) keep their kernel rows
    # but for the momentum they carried in
    velocity_only = [
        old + MOMENTUM * (MOMENTUM * v.astype(np.float64))
        for old, v in zip(before, problem["velocities"], strict=True)
    ]
    np.testing.assert_allclose(ours[1][:4], velocity_only[1][:4], rtol=0, atol=1e-7)
    assert np.abs(ours[1][4:] - velocity_only[1][4:]).max() > 1e-3  # the ordinary samples learn
    # while the exact cross-entropy moves the wrong samples' rows far
    exact, exact_loss = _core_step(problem, clipped=False)
    assert np.abs(exact[1][2:4] - velocity_only[1][2:4]).max() > 1e-3
    assert exact_loss > our_loss
