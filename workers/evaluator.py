"""The batched masked-head evaluator: many masks in, three objectives per mask out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from keras import ops

from evoprune.shared.config import ExperimentConfig, RobustnessConfig
from evoprune.shared.masks import MaskError, active_fraction
from evoprune.shared.objectives import Evaluation
from evoprune.workers import head_core
from evoprune.workers.backend import backend_name, compile_function, has_accelerator
from evoprune.workers.early_stopping import EarlyStoppingState, should_compact
from evoprune.workers.features import FeatureSet, Fold, Split
from evoprune.workers.head_layout import HeadShape, active_indices, head_shape, initial_weights, padded_width
from evoprune.workers.odin import ood_auroc

CPU_GROUP_SIZE = 4
SCORING_ROWS = 256  # fixed row block for scoring, so scoring shapes never depend on the split's size


@dataclass
class _Trained:
    """One model's final weights, unpadded, and how many epochs it ran."""

    params: list[np.ndarray]
    epochs: int


@dataclass
class _Batch:
    """The models still training, padded to common widths."""

    members: list[int]  # positions in the evaluate() call
    widths: list[int]  # padded width per position
    params: tuple
    momenta: tuple
    best: tuple
    input_indices: object
    states: list[EarlyStoppingState] = field(default_factory=list)


class BatchedEvaluator:
    """Trains P masked heads at once, exactly to the protocol in the config, and scores them.

    Fitness is a deterministic function of (features, mask, protocol): every mask starts from the same
    seeded initial weights and sees the same seeded batch order, and each model's arithmetic is laid out so
    that it does not depend on which other masks share its batch.
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        config: ExperimentConfig,
        *,
        group_size: int | None = None,
        xla: bool | None = None,
    ) -> None:
        """Prepares the evaluator; features go to the backend's device once.

        Args:
            feature_set: the features to train and score on.
            config: the experiment config (head, training, robustness).
            group_size: models trained in one computation. On a CPU a few models at a time keep each
                model's weights and momenta in cache, which measured faster than one large batch whose
                optimizer update streams through memory; an accelerator takes every mask at once.
            xla: compile with XLA under TensorFlow (measured fastest for small groups on CPU).
        """
        accelerator = has_accelerator()
        self.group_size = group_size or (1024 if accelerator else CPU_GROUP_SIZE)
        if self.group_size < 1:
            raise ValueError("group_size must be >= 1")
        self.xla = (not accelerator) if xla is None else xla
        self.feature_set = feature_set
        self.config = config
        self.shape: HeadShape = head_shape(config.head, feature_set.input_dim, feature_set.num_classes)
        self._initial = initial_weights(self.shape, config.training.seed)
        training = config.training
        self._spec = head_core.CoreSpec(
            pruned=tuple(
                position in self.shape.pruned_positions for position in range(len(self.shape.widths))
            ),
            hidden_bias=self.shape.hidden_bias,
            learning_rate=training.learning_rate,
            momentum=training.momentum,
            nesterov=training.nesterov,
            decay=training.decay,
        )
        self._train_epoch = compile_function(partial(head_core.train_epoch, self._spec), xla=self.xla)
        self._logits = compile_function(partial(head_core.logits_for, self._spec), xla=self.xla)
        self._select = compile_function(head_core.select_models)
        self._folds = [self._device_fold(fold) for fold in feature_set.folds]

    @property
    def mask_length(self) -> int:
        """Bits per mask."""
        return self.shape.mask_length

    def _device_fold(self, fold: Fold) -> dict:
        train = fold.train
        features = _extend(train.features)
        targets = np.zeros((len(train) + 1, self.shape.num_classes), dtype=np.float32)
        targets[np.arange(len(train)), train.labels] = 1.0
        return {
            "features": ops.convert_to_tensor(features),
            "targets": ops.convert_to_tensor(targets),
            "size": len(train),
        }

    def evaluate(self, masks: np.ndarray) -> list[Evaluation]:
        """Trains and scores one model per mask.

        Args:
            masks: (P, L) array of bools, L = `mask_length`.

        Returns:
            One Evaluation per mask, in order; accuracy and AUROC averaged over folds.

        Raises:
            MaskError: masks of the wrong shape.
        """
        masks = np.asarray(masks)
        if masks.ndim != 2 or masks.shape[1] != self.mask_length:
            raise MaskError(f"masks must be an array of shape (P, {self.mask_length}), got {masks.shape}")
        masks = masks.astype(bool)
        if masks.shape[0] == 0:
            return []
        started = time.perf_counter()
        kept = [active_indices(self.shape, mask) for mask in masks]
        # Masks of similar widths train together so that little padding is computed.
        by_width = sorted(range(len(kept)), key=lambda m: tuple(len(indices) for indices in kept[m]))
        groups = [
            by_width[start : start + self.group_size] for start in range(0, len(by_width), self.group_size)
        ]
        per_fold = []
        for fold_index, fold in enumerate(self.feature_set.folds):
            fold_scores: list[dict] = [{} for _ in kept]
            for group in groups:
                group_kept = [kept[m] for m in group]
                trained = self._train(fold_index, group_kept)
                for member, score in zip(group, self._score(fold, group_kept, trained), strict=True):
                    fold_scores[member] = score
            per_fold.append(fold_scores)
        seconds = (time.perf_counter() - started) / len(masks)
        results = []
        for model, mask in enumerate(masks):
            scores = [fold_scores[model] for fold_scores in per_fold]
            test_accuracy = _mean_or_none([s["test_accuracy"] for s in scores])
            test_auroc = _mean_or_none([s["test_auroc"] for s in scores])
            results.append(
                Evaluation(
                    accuracy=float(np.mean([s["accuracy"] for s in scores])),
                    active_fraction=active_fraction(mask),
                    auroc=float(np.mean([s["auroc"] for s in scores])),
                    test_accuracy=test_accuracy,
                    test_auroc=test_auroc,
                    epochs=float(np.mean([s["epochs"] for s in scores])),
                    seconds=seconds,
                )
            )
        return results

    # -- training ---------------------------------------------------------------------------------------

    def _padded_widths(self, members: list[int], kept: list[list[np.ndarray]]) -> list[int]:
        """Per position, the width every member of a batch is padded to."""
        return [
            padded_width(max(len(kept[m][position]) for m in members), self._spec.pruned[position])
            for position in range(len(self.shape.widths))
        ]

    def _batch_for(self, members: list[int], kept: list[list[np.ndarray]]) -> _Batch:
        widths = self._padded_widths(members, kept)
        params = tuple(ops.convert_to_tensor(a) for a in self._padded_initial(members, kept, widths))
        momenta = tuple(ops.zeros_like(p) for p in params)
        indices = np.full((len(members), widths[0]), self.shape.widths[0], dtype=np.int32)
        for row, member in enumerate(members):
            indices[row, : len(kept[member][0])] = kept[member][0]
        return _Batch(members, widths, params, momenta, params, ops.convert_to_tensor(indices))

    def _padded_initial(
        self, members: list[int], kept: list[list[np.ndarray]], widths: list[int]
    ) -> list[np.ndarray]:
        sizes = [*widths, self.shape.num_classes]
        layer_count = self.shape.layer_count
        arrays = []
        for layer in range(layer_count):
            stacked = np.zeros((len(members), sizes[layer], sizes[layer + 1]), dtype=np.float32)
            for row, member in enumerate(members):
                rows = kept[member][layer]
                columns = kept[member][layer + 1] if layer + 1 < layer_count else np.arange(sizes[-1])
                stacked[row, : len(rows), : len(columns)] = self._initial[layer][np.ix_(rows, columns)]
            arrays.append(stacked)
        bias_widths = [*widths[1:]] if self.shape.hidden_bias else []
        for width in [*bias_widths, self.shape.num_classes]:
            arrays.append(np.zeros((len(members), width), dtype=np.float32))
        return arrays

    def _epoch_order(self, fold_index: int, epoch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The seeded batch sequence of one epoch, the same for every mask."""
        batch_size = self.config.training.batch_size
        generator = np.random.default_rng(
            np.random.SeedSequence([self.config.training.seed, fold_index, epoch, 0xBA7C4])
        )
        permutation = generator.permutation(size)
        batch_count = -(-size // batch_size)
        order = np.full(batch_count * batch_size, size, dtype=np.int32)
        order[:size] = permutation
        weights = np.zeros(batch_count * batch_size, dtype=np.float32)
        weights[:size] = 1.0
        return order.reshape(batch_count, batch_size), weights.reshape(batch_count, batch_size)

    def _train(self, fold_index: int, kept: list[list[np.ndarray]]) -> list[_Trained]:
        training = self.config.training
        stopping = training.early_stopping
        data = self._folds[fold_index]
        size = data["size"]
        batch = self._batch_for(list(range(len(kept))), kept)
        batch.states = [EarlyStoppingState(stopping.min_delta, stopping.patience) for _ in kept]
        finished: dict[int, _Trained] = {}
        batch_count = -(-size // training.batch_size)
        for epoch in range(training.max_epochs):
            order, weights = self._epoch_order(fold_index, epoch, size)
            params, momenta, loss_total = self._train_epoch(
                batch.params,
                batch.momenta,
                data["features"],
                data["targets"],
                ops.convert_to_tensor(order),
                ops.convert_to_tensor(weights),
                batch.input_indices,
                ops.convert_to_tensor(np.int32(epoch * batch_count)),
            )
            batch.params, batch.momenta = params, momenta
            epoch_losses = np.asarray(ops.convert_to_numpy(loss_total), dtype=np.float64) / size
            improved = np.array(
                [state.observe(loss) for state, loss in zip(batch.states, epoch_losses, strict=True)]
            )
            if improved.any():
                batch.best = self._select(ops.convert_to_tensor(improved), batch.params, batch.best)
            stopped = [
                row for row, state in enumerate(batch.states) if stopping.enabled and state.should_stop(epoch)
            ]
            # models the rule stopped are collected first: Keras 2 restored their best weights even when
            # the rule fired on the last epoch; the rest of the batch ends by running out of epochs
            self._collect(batch, stopped, kept, finished, epoch + 1, early_stopped=True)
            if epoch == training.max_epochs - 1:
                stopped = list(range(len(batch.members)))
            if stopped:
                self._collect(batch, stopped, kept, finished, epoch + 1, early_stopped=False)
                remaining = [row for row in range(len(batch.members)) if row not in set(stopped)]
                if not remaining:
                    break
                if should_compact(len(remaining), len(batch.members), _backend_prefers_fixed_shapes()):
                    batch = self._compact(batch, remaining, kept)
                else:
                    # Stopped models stay in the computation until enough leave; their results are taken.
                    for row in stopped:
                        batch.states[row].retire()
        return [finished[m] for m in range(len(kept))]

    def _collect(
        self,
        batch: _Batch,
        rows: list[int],
        kept: list[list[np.ndarray]],
        finished: dict,
        epochs: int,
        *,
        early_stopped: bool,
    ) -> None:
        if not rows:
            return
        restore = self.config.training.early_stopping.restore_best_weights
        use_best = restore == "always" or (restore == "when_stopped" and early_stopped)
        source = batch.best if use_best else batch.params
        arrays = [np.asarray(ops.convert_to_numpy(tensor)) for tensor in source]
        for row in rows:
            member = batch.members[row]
            if member in finished:
                continue
            finished[member] = _Trained(_unpad(arrays, row, kept[member], self.shape), epochs)

    def _compact(self, batch: _Batch, remaining: list[int], kept: list[list[np.ndarray]]) -> _Batch:
        members = [batch.members[row] for row in remaining]
        widths = self._padded_widths(members, kept)
        sizes = [*widths, self.shape.num_classes]
        rows = np.asarray(remaining, dtype=np.int32)

        def shrink(tensors: tuple) -> tuple:
            out = []
            for index, tensor in enumerate(tensors):
                taken = ops.take(tensor, rows, axis=0)
                if index < self.shape.layer_count:
                    taken = taken[:, : sizes[index], : sizes[index + 1]]
                elif index < len(tensors) - 1:
                    taken = taken[:, : widths[index - self.shape.layer_count + 1]]
                out.append(taken)
            return tuple(out)

        compacted = _Batch(
            members,
            widths,
            shrink(batch.params),
            shrink(batch.momenta),
            shrink(batch.best),
            ops.take(batch.input_indices, rows, axis=0)[:, : widths[0]],
            [batch.states[row] for row in remaining],
        )
        return compacted

    # -- scoring ----------------------------------------------------------------------------------------

    def _score(self, fold: Fold, kept: list[list[np.ndarray]], trained: list[_Trained]) -> list[dict]:
        members = list(range(len(kept)))
        widths = self._padded_widths(members, kept)
        params = tuple(ops.convert_to_tensor(a) for a in self._padded_trained(trained, widths))
        indices = np.full((len(members), widths[0]), self.shape.widths[0], dtype=np.int32)
        for row in members:
            indices[row, : len(kept[row][0])] = kept[row][0]
        index_tensor = ops.convert_to_tensor(indices)
        evaluation_logits = self._all_logits(params, index_tensor, fold.evaluation.features)
        ood_logits = self._all_logits(params, index_tensor, fold.ood)
        test_logits = test_ood_logits = None
        if fold.test is not None and fold.test_ood is not None:
            test_logits = self._all_logits(params, index_tensor, fold.test.features)
            test_ood_logits = self._all_logits(params, index_tensor, fold.test_ood)
        scoring = self.config.robustness
        scores = []
        for model in members:
            accuracy, robustness = _objectives(
                evaluation_logits[model], ood_logits[model], fold.evaluation, scoring
            )
            test_accuracy = test_robustness = None
            if test_logits is not None and test_ood_logits is not None and fold.test is not None:
                test_accuracy, test_robustness = _objectives(
                    test_logits[model], test_ood_logits[model], fold.test, scoring
                )
            scores.append(
                {
                    "accuracy": accuracy,
                    "auroc": robustness,
                    "test_accuracy": test_accuracy,
                    "test_auroc": test_robustness,
                    "epochs": trained[model].epochs,
                }
            )
        return scores

    def _padded_trained(self, trained: list[_Trained], widths: list[int]) -> list[np.ndarray]:
        sizes = [*widths, self.shape.num_classes]
        arrays = []
        for index in range(len(trained[0].params)):
            if index < self.shape.layer_count:
                shape: tuple[int, ...] = (sizes[index], sizes[index + 1])
            elif index < len(trained[0].params) - 1:
                shape = (widths[index - self.shape.layer_count + 1],)
            else:
                shape = (self.shape.num_classes,)
            stacked = np.zeros((len(trained), *shape), dtype=np.float32)
            for row, model in enumerate(trained):
                piece = model.params[index]
                region: tuple[int | slice, ...] = (row, *(slice(0, n) for n in piece.shape))
                stacked[region] = piece
            arrays.append(stacked)
        return arrays

    def _all_logits(self, params: tuple, indices: object, features: np.ndarray) -> np.ndarray:
        extended = _extend(features)[:-1]
        blocks = []
        for start in range(0, len(extended), SCORING_ROWS):
            block = extended[start : start + SCORING_ROWS]
            padded = np.zeros((SCORING_ROWS, extended.shape[1]), dtype=np.float32)
            padded[: len(block)] = block
            logits = self._logits(params, ops.convert_to_tensor(padded), indices)
            blocks.append(np.asarray(ops.convert_to_numpy(logits))[:, : len(block)])
        return np.concatenate(blocks, axis=1)


def _extend(features: np.ndarray) -> np.ndarray:
    """Features with a zero row and a zero column appended: the targets of padding indices."""
    rows, columns = features.shape
    extended = np.zeros((rows + 1, columns + 1), dtype=np.float32)
    extended[:rows, :columns] = features
    return extended


def _unpad(arrays: list[np.ndarray], row: int, kept: list[np.ndarray], shape: HeadShape) -> list[np.ndarray]:
    sizes = [*(len(k) for k in kept), shape.num_classes]
    out = []
    for index, array in enumerate(arrays):
        if index < shape.layer_count:
            out.append(array[row, : sizes[index], : sizes[index + 1]].copy())
        elif index < len(arrays) - 1:
            out.append(array[row, : sizes[index - shape.layer_count + 1]].copy())
        else:
            out.append(array[row].copy())
    return out


def _objectives(
    logits: np.ndarray, ood_logits: np.ndarray, split: Split, scoring: RobustnessConfig
) -> tuple[float, float]:
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == split.labels))
    robustness = ood_auroc(logits, ood_logits, scoring.temperature, scoring.auroc_estimator)
    return accuracy, robustness


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def _backend_prefers_fixed_shapes() -> bool:
    return backend_name() == "jax"
