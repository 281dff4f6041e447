"""The reference-style evaluator: one Keras model per mask, trained with model.fit and EarlyStopping."""

from __future__ import annotations

import time

import keras
import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.shared.masks import active_fraction
from evoprune.shared.objectives import Evaluation
from evoprune.workers.evaluation.head_layout import HeadShape, head_shape, initial_weights
from evoprune.workers.evaluation.odin import ood_auroc
from evoprune.workers.features.feature_set import FeatureSet, Split


class MaskedDense(keras.layers.Dense):
    """A Dense layer whose kernel is multiplied by a fixed binary mask, as the reference's sparse layer."""

    def __init__(self, units: int, kernel_mask: np.ndarray, unit_mask: np.ndarray, **kwargs: object) -> None:
        super().__init__(units, **kwargs)
        self._kernel_mask = np.asarray(kernel_mask, dtype=np.float32)
        self._unit_mask = np.asarray(unit_mask, dtype=np.float32)

    def call(self, inputs):
        outputs = keras.ops.matmul(inputs, self.kernel * keras.ops.convert_to_tensor(self._kernel_mask))
        if self.use_bias:
            # A pruned unit loses its bias too: it is removed, not just disconnected from its inputs.
            outputs = outputs + self.bias * keras.ops.convert_to_tensor(self._unit_mask)
        return self.activation(outputs) if self.activation is not None else outputs


def _keras2_clipped_crossentropy(targets, probabilities):
    """Keras 2's cross-entropy on softmax outputs: normalised, clipped to [1e-7, 1 - 1e-7], -sum(y log p).

    Keras 3's "categorical_crossentropy" would take the softmax's cached logits and skip the clip; dividing
    by the sum makes a new tensor without them, as Keras 2 computed it.
    """
    normalised = probabilities / keras.ops.sum(probabilities, axis=-1, keepdims=True)
    clipped = keras.ops.clip(normalised, 1e-7, 1.0 - 1e-7)
    return -keras.ops.sum(targets * keras.ops.log(clipped), axis=-1)


class _RestoreWhenStopped(keras.callbacks.EarlyStopping):
    """Keras 2's EarlyStopping: the best weights come back only when patience ran out, not at max epochs."""

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0:
            super().on_train_end(logs)


class _SeededBatches(keras.utils.PyDataset):
    """Yields the same seeded batch sequence as the batched evaluator (matched comparisons only)."""

    def __init__(self, split: Split, num_classes: int, order_for_epoch, batch_size: int) -> None:
        super().__init__()
        self._features = split.features
        self._targets = keras.utils.to_categorical(split.labels, num_classes).astype(np.float32)
        self._order_for_epoch = order_for_epoch
        self._batch_size = batch_size
        self._completed = 0  # full passes fetched so far: the index of the epoch that begins next
        self._fetched = 0
        self._order = order_for_epoch(0)

    def __len__(self) -> int:
        return -(-len(self._features) // self._batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self._fetched += 1
        rows = self._order[index * self._batch_size : (index + 1) * self._batch_size]
        return self._features[rows], self._targets[rows]

    def on_epoch_begin(self) -> None:
        self._order = self._order_for_epoch(self._completed)
        self._fetched = 0

    def on_epoch_end(self) -> None:
        # Keras peeks at a batch or two before training, inside an epoch of its own under JAX (begin, one
        # batch, end) and outside any under TensorFlow; only a full pass counts as an epoch, so both
        # backends see the epochs' orders in sequence.
        if self._fetched >= len(self):
            self._completed += 1


def _kernel_masks(shape: HeadShape, mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer, the 0/1 matrix its kernel is multiplied by, and per hidden layer its kept units."""
    sizes = list(shape.widths)
    masks = [np.ones((sizes[layer], sizes[layer + 1]), dtype=np.float32) for layer in range(len(sizes) - 1)]
    masks.append(np.ones((sizes[-1], shape.num_classes), dtype=np.float32))
    units = [np.ones(width, dtype=np.float32) for width in sizes[1:]]
    offset = 0
    for position, length in shape.segments:
        bits = mask[offset : offset + length].astype(np.float32)
        offset += length
        # Selecting position p keeps rows p of kernel p (its inputs) and columns of kernel p - 1 (its units).
        masks[position] = masks[position] * bits[:, None]
        if position > 0:
            masks[position - 1] = masks[position - 1] * bits[None, :]
            units[position - 1] = units[position - 1] * bits
    return masks, units


class ReferenceEvaluator:
    """Trains one Keras model per mask as the reference implementation did.

    `matched=True` gives both evaluators the same initial weights and batch order, so their results
    differ only by floating-point rounding; `matched=False` is the reference as it was (Keras's own
    initialisation and shuffling), which the benchmark times.
    """

    def __init__(self, feature_set: FeatureSet, config: ExperimentConfig, *, matched: bool = True) -> None:
        self.feature_set = feature_set
        self.config = config
        self.matched = matched
        self.shape = head_shape(config.head, feature_set.input_dim, feature_set.num_classes)
        self._initial = initial_weights(self.shape, config.training.seed)

    def _model(self, mask: np.ndarray) -> tuple[keras.Model, keras.Model]:
        kernel_masks, unit_masks = _kernel_masks(self.shape, mask)
        inputs = keras.Input(shape=(self.shape.widths[0],))
        hidden = inputs
        for layer, units in enumerate(self.shape.widths[1:]):
            hidden = MaskedDense(
                units,
                kernel_masks[layer],
                unit_masks[layer],
                activation="relu",
                use_bias=self.shape.hidden_bias,
            )(hidden)
        logits = keras.layers.Dense(self.shape.num_classes)(hidden)
        probabilities = keras.layers.Activation("softmax")(logits)
        model = keras.Model(inputs, probabilities)
        training = self.config.training
        schedule = keras.optimizers.schedules.InverseTimeDecay(
            training.learning_rate, decay_steps=1, decay_rate=training.decay
        )
        model.compile(
            optimizer=keras.optimizers.SGD(schedule, momentum=training.momentum, nesterov=training.nesterov),
            loss=_keras2_clipped_crossentropy
            if training.loss == "keras2_clipped"
            else "categorical_crossentropy",
        )
        if self.matched:
            model.set_weights(self._keras_order(self._initial))
        return model, keras.Model(inputs, logits)

    def _keras_order(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        """Ours are kernels, hidden biases, output bias; Keras lists each layer's kernel then bias."""
        layers = self.shape.layer_count
        if not self.shape.hidden_bias:
            return weights
        kernels, biases = weights[:layers], weights[layers:-1]
        ordered: list[np.ndarray] = []
        for kernel, bias in zip(kernels[:-1], biases, strict=True):
            ordered += [kernel, bias]
        return [*ordered, kernels[-1], weights[-1]]

    def _order(self, fold_index: int, size: int):
        seed = self.config.training.seed

        def order_for_epoch(epoch: int) -> np.ndarray:
            generator = np.random.default_rng(np.random.SeedSequence([seed, fold_index, epoch, 0xBA7C4]))
            return generator.permutation(size)

        return order_for_epoch

    def evaluate(self, masks: np.ndarray) -> list[Evaluation]:
        """Trains and scores one model per mask, one after another."""
        results = []
        for mask in np.asarray(masks, dtype=bool):
            started = time.perf_counter()
            accuracies, robustness, epochs = [], [], []
            for fold_index, fold in enumerate(self.feature_set.folds):
                model, logits_model = self._model(mask)
                training = self.config.training
                stopping = training.early_stopping
                callbacks = []
                if stopping.enabled:
                    callback = (
                        _RestoreWhenStopped if stopping.restore_best_weights == "when_stopped" else
                        keras.callbacks.EarlyStopping
                    )  # fmt: skip
                    callbacks.append(
                        callback(
                            monitor="loss",
                            min_delta=stopping.min_delta,
                            patience=stopping.patience,
                            restore_best_weights=stopping.restore_best_weights != "never",
                        )
                    )
                if self.matched:
                    data = _SeededBatches(
                        fold.train,
                        self.shape.num_classes,
                        self._order(fold_index, len(fold.train)),
                        training.batch_size,
                    )
                    # PyDataset batches would be reordered by fit(shuffle=True); the order is ours here.
                    history = model.fit(
                        data, epochs=training.max_epochs, callbacks=callbacks, verbose=0, shuffle=False
                    )
                else:
                    targets = keras.utils.to_categorical(fold.train.labels, self.shape.num_classes)
                    history = model.fit(
                        fold.train.features,
                        targets,
                        batch_size=training.batch_size,
                        epochs=training.max_epochs,
                        shuffle=True,
                        callbacks=callbacks,
                        verbose=0,
                    )
                epochs.append(len(history.history["loss"]))
                scoring = self.config.robustness
                logits = logits_model.predict(fold.evaluation.features, batch_size=256, verbose=0)
                ood_logits = logits_model.predict(fold.ood, batch_size=256, verbose=0)
                accuracies.append(float(np.mean(np.argmax(logits, axis=-1) == fold.evaluation.labels)))
                robustness.append(
                    ood_auroc(
                        logits,
                        ood_logits,
                        scoring.temperature,
                        scoring.auroc_estimator,
                        scoring.score_precision,
                    )
                )
            results.append(
                Evaluation(
                    accuracy=float(np.mean(accuracies)),
                    active_fraction=active_fraction(mask),
                    auroc=float(np.mean(robustness)),
                    epochs=float(np.mean(epochs)),
                    seconds=time.perf_counter() - started,
                    worker="reference",
                )
            )
        return results
