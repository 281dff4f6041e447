"""The batched masked-head evaluator: many masks in, three objectives per mask out."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from keras import ops

from evoprune.shared.config import ExperimentConfig, RobustnessConfig
from evoprune.shared.masks import MaskError, active_fraction
from evoprune.shared.objectives import Evaluation
from evoprune.workers import head_core
from evoprune.workers.backend import compile_function, has_accelerator
from evoprune.workers.features import FeatureSet, Fold, Split
from evoprune.workers.grouping import (
    ACCELERATOR_MIN_GROUP,
    ACCELERATOR_PADDING_WASTE,
    CallFlops,
    GroupPolicy,
    group_masks,
)
from evoprune.workers.head_layout import HeadShape, active_indices, head_shape
from evoprune.workers.odin import ood_auroc
from evoprune.workers.trainer import HeadTrainer, Trained, extend_features

CPU_GROUP_SIZE = 4
SCORING_ROWS = 256  # fixed row block for scoring, so scoring shapes never depend on the split's size


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
        epochs_per_call: int | None = None,
        padding_waste: float | None = None,
    ) -> None:
        """Prepares the evaluator; features go to the backend's device once.

        Args:
            feature_set: the features to train and score on.
            config: the experiment config (head, training, robustness).
            group_size: models trained in one computation. On a CPU a few models at a time keep each
                model's weights and momenta in cache, which measured faster than one large batch whose
                optimizer update streams through memory; an accelerator takes every mask at once.
            xla: compile with XLA under TensorFlow (measured fastest for small groups on CPU).
            epochs_per_call: overrides `training.epochs_per_call` (the benchmark times both paths).
            padding_waste: split masks into groups whose padding FLOPs stay under this fraction (groups of
                at least ACCELERATOR_MIN_GROUP on an accelerator); the default on an accelerator is
                ACCELERATOR_PADDING_WASTE, on a CPU fixed groups of `group_size` masks sorted by width.
        """
        accelerator = has_accelerator()
        self.group_size = group_size or (1024 if accelerator else CPU_GROUP_SIZE)
        if self.group_size < 1:
            raise ValueError("group_size must be >= 1")
        if accelerator:
            waste = ACCELERATOR_PADDING_WASTE if padding_waste is None else padding_waste
            self.group_policy = GroupPolicy(self.group_size, waste, ACCELERATOR_MIN_GROUP)
        else:
            self.group_policy = GroupPolicy(self.group_size, padding_waste)
        self.last_flops = CallFlops()  # the arithmetic of the latest evaluate() call's training
        self.xla = (not accelerator) if xla is None else xla
        self.feature_set = feature_set
        self.config = config
        self.shape: HeadShape = head_shape(config.head, feature_set.input_dim, feature_set.num_classes)
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
        self._logits = compile_function(partial(head_core.logits_for, self._spec), xla=self.xla)
        self._trainer = HeadTrainer(
            feature_set, config, self.shape, self._spec, xla=self.xla, epochs_per_call=epochs_per_call
        )
        self.epochs_per_call = self._trainer.epochs_per_call

    @property
    def mask_length(self) -> int:
        """Bits per mask."""
        return self.shape.mask_length

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
        widths = [tuple(len(indices) for indices in model) for model in kept]
        # Masks of similar widths train together so that little padding is computed.
        groups = group_masks(widths, self._spec.pruned, self.shape.num_classes, self.group_policy)
        flops = CallFlops()
        batch_size = self.config.training.batch_size
        per_fold = []
        for fold_index, fold in enumerate(self.feature_set.folds):
            fold_scores: list[dict] = [{} for _ in kept]
            size = len(fold.train)
            for group in groups:
                group_kept = [kept[m] for m in group]
                trained = self._train(fold_index, group_kept)
                flops.add_group(
                    [widths[m] for m in group],
                    [model.epochs for model in trained],
                    self._spec.pruned,
                    self.shape.num_classes,
                    -(-size // batch_size) * batch_size,
                    size,
                )
                for member, score in zip(group, self._score(fold, group_kept, trained), strict=True):
                    fold_scores[member] = score
            per_fold.append(fold_scores)
        self.last_flops = flops
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

    # -- training (workers/trainer.py) ---------------------------------------------------------------

    def _padded_widths(self, members: list[int], kept: list[list[np.ndarray]]) -> list[int]:
        return self._trainer.padded_widths(members, kept)

    def _train(self, fold_index: int, kept: list[list[np.ndarray]]) -> list[Trained]:
        return self._trainer.train(fold_index, kept)

    # -- scoring ----------------------------------------------------------------------------------------

    def _score(self, fold: Fold, kept: list[list[np.ndarray]], trained: list[Trained]) -> list[dict]:
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

    def _padded_trained(self, trained: list[Trained], widths: list[int]) -> list[np.ndarray]:
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
        extended = extend_features(features)[:-1]
        blocks = []
        for start in range(0, len(extended), SCORING_ROWS):
            block = extended[start : start + SCORING_ROWS]
            padded = np.zeros((SCORING_ROWS, extended.shape[1]), dtype=np.float32)
            padded[: len(block)] = block
            logits = self._logits(params, ops.convert_to_tensor(padded), indices)
            blocks.append(np.asarray(ops.convert_to_numpy(logits))[:, : len(block)])
        return np.concatenate(blocks, axis=1)


def _objectives(
    logits: np.ndarray, ood_logits: np.ndarray, split: Split, scoring: RobustnessConfig
) -> tuple[float, float]:
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == split.labels))
    robustness = ood_auroc(logits, ood_logits, scoring.temperature, scoring.auroc_estimator)
    return accuracy, robustness


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None
