"""The batched masked-head evaluator: many masks in, three objectives per mask out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import TypedDict

import numpy as np
from keras import ops

from evoprune.shared.config import ExperimentConfig, RobustnessConfig
from evoprune.shared.masks import MaskError, active_fraction
from evoprune.shared.objectives import Evaluation, minimisation_of
from evoprune.shared.screening import ScreeningRequest
from evoprune.workers.backend import compile_function, has_accelerator
from evoprune.workers.evaluation import _head_core
from evoprune.workers.evaluation._grouping import (
    ACCELERATOR_MIN_GROUP,
    ACCELERATOR_PADDING_WASTE,
    CallFlops,
    GroupPolicy,
    group_masks,
)
from evoprune.workers.evaluation._trainer import HeadTrainer, Trained, TrainingRun, extend_features
from evoprune.workers.evaluation.head_layout import HeadShape, active_indices, head_shape
from evoprune.workers.evaluation.odin import ood_auroc
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

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
        self._spec = _head_core.CoreSpec(
            pruned=tuple(
                position in self.shape.pruned_positions for position in range(len(self.shape.widths))
            ),
            hidden_bias=self.shape.hidden_bias,
            learning_rate=training.learning_rate,
            momentum=training.momentum,
            nesterov=training.nesterov,
            decay=training.decay,
            clipped_loss=training.loss == "keras2_clipped",
            float64_loss=training.early_stopping.decision == "keras2_float64",
        )
        self._logits = compile_function(partial(_head_core.logits_for, self._spec), xla=self.xla)
        self._trainer = HeadTrainer(
            feature_set, config, self.shape, self._spec, xla=self.xla, epochs_per_call=epochs_per_call
        )
        self.epochs_per_call = self._trainer.epochs_per_call

    @property
    def mask_length(self) -> int:
        """Bits per mask."""
        return self.shape.mask_length

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        """Trains and scores one model per mask.

        Args:
            masks: (P, L) array of bools, L = `mask_length`.
            screening: pause every model at the screening budget, record its objectives there, and stop
                the masks the request's rule finds hopeless (search.screening); None trains straight on.

        Returns:
            One Evaluation per mask, in order; accuracy and AUROC averaged over folds. A screened-out
            mask's has `fidelity` < 1 and the budget's objectives; every other mask's are the full
            protocol's, bitwise as without screening.

        Raises:
            MaskError: masks of the wrong shape.
        """
        masks = np.asarray(masks)
        if masks.ndim != 2 or masks.shape[1] != self.mask_length:
            raise MaskError(f"masks must be an array of shape (P, {self.mask_length}), got {masks.shape}")
        masks = masks.astype(bool)
        if screening is not None and len(screening.assignment) != len(masks):
            covered = len(screening.assignment)
            raise ValueError(f"the screening request covers {covered} of {len(masks)} masks")
        if masks.shape[0] == 0:
            return []
        started = time.perf_counter()
        kept = [active_indices(self.shape, mask) for mask in masks]
        widths = [tuple(len(indices) for indices in model) for model in kept]
        # Masks of similar widths train together so that little padding is computed.
        groups = group_masks(widths, self._spec.pruned, self.shape.num_classes, self.group_policy)
        max_epochs = self.config.training.max_epochs
        budget = screening.epochs if screening is not None and screening.epochs < max_epochs else None
        trainings = [self._start_fold(fold_index, groups, kept, budget) for fold_index in range(self.folds)]
        screened_scores = [self._budget_score(model, trainings) for model in range(len(masks))]
        hopeless = set()
        if screening is not None:
            for model, score in enumerate(screened_scores):
                if score is None:
                    continue
                vector = minimisation_of((score["accuracy"], active_fraction(masks[model]), score["auroc"]))
                if screening.hopeless(model, np.asarray(vector)):
                    hopeless.add(model)
        flops = CallFlops()
        for fold in trainings:
            self._finish_fold(fold, groups, kept, hopeless, widths, flops)
        self.last_flops = flops
        seconds = (time.perf_counter() - started) / len(masks)
        results = []
        for model, mask in enumerate(masks):
            low = screened_scores[model]
            if model in hopeless:
                assert low is not None and budget is not None
                final, fidelity = low, budget / max_epochs
            else:
                final, fidelity = _averaged([fold.final[model] for fold in trainings]), 1.0
            results.append(
                Evaluation(
                    accuracy=final["accuracy"],
                    active_fraction=active_fraction(mask),
                    auroc=final["auroc"],
                    test_accuracy=final["test_accuracy"],
                    test_auroc=final["test_auroc"],
                    epochs=final["epochs"],
                    seconds=seconds,
                    fidelity=fidelity,
                    screen_accuracy=None if low is None else low["accuracy"],
                    screen_auroc=None if low is None else low["auroc"],
                    screen_epochs=None if low is None else budget,
                )
            )
        return results

    @staticmethod
    def _budget_score(model: int, trainings: list[_FoldTraining]) -> FoldScore | None:
        """A mask's objectives at the screening budget averaged over folds; None without a pause.

        None too for a mask that stopped early before the budget in every fold: its result is already final.
        Where it finished in one fold only, that fold's final score is exactly its score at the budget.
        """
        at_budget = [fold.at_budget[model] for fold in trainings]
        if all(score is None for score in at_budget):
            return None
        return _averaged(
            [
                score if score is not None else fold.final[model]
                for score, fold in zip(at_budget, trainings, strict=True)
            ]
        )

    @property
    def folds(self) -> int:
        """Folds every mask is trained on."""
        return len(self.feature_set.folds)

    def _start_fold(
        self, fold_index: int, groups: list[list[int]], kept: list[list[np.ndarray]], budget: int | None
    ) -> _FoldTraining:
        """Trains every group of one fold to the screening budget (with none, to the end) and scores it.

        Models that finish first are scored as final; with a budget, the others are scored as they stand
        at it (`at_budget`) and their groups stay paused for `_finish_fold`.
        """
        fold = self.feature_set.folds[fold_index]
        training = _FoldTraining(fold_index, [None] * len(kept), [None] * len(kept))
        for group in groups:
            run = self._trainer.start(fold_index, [kept[m] for m in group])
            self._trainer.advance(run, self.config.training.max_epochs if budget is None else budget)
            self._score_into(training.final, fold, group, kept, run.finished)
            if run.batch is not None:
                self._score_into(training.at_budget, fold, group, kept, self._trainer.snapshot(run))
                training.paused.append((group, run))
        return training

    def _finish_fold(
        self,
        training: _FoldTraining,
        groups: list[list[int]],
        kept: list[list[np.ndarray]],
        hopeless: set[int],
        widths: list[tuple[int, ...]],
        flops: CallFlops,
    ) -> None:
        """Drops the hopeless masks from their paused groups, trains the rest of one fold to the end."""
        fold = self.feature_set.folds[training.fold_index]
        for group, run in training.paused:
            done = set(run.finished)
            self._trainer.drop(run, {position for position, m in enumerate(group) if m in hopeless})
            self._trainer.advance(run, self.config.training.max_epochs)
            fresh = {position: trained for position, trained in run.finished.items() if position not in done}
            self._score_into(training.final, fold, group, kept, fresh)
        training.paused = []  # the paused states are released with the fold
        size = len(fold.train)
        batch_size = self.config.training.batch_size
        for group in groups:
            flops.add_group(
                [widths[m] for m in group],
                [training.epochs_trained(m) for m in group],
                self._spec.pruned,
                self.shape.num_classes,
                -(-size // batch_size) * batch_size,
                size,
            )

    def _score_into(
        self,
        scores: list[FoldScore | None],
        fold: Fold,
        group: list[int],
        kept: list[list[np.ndarray]],
        trained: dict[int, Trained],
    ) -> None:
        """Scores trained models of one group, filing each score at its mask's position in the call."""
        positions = sorted(trained)
        if not positions:
            return
        members = [group[position] for position in positions]
        results = self._score(fold, [kept[m] for m in members], [trained[p] for p in positions])
        for member, score in zip(members, results, strict=True):
            scores[member] = score

    # -- training (workers/evaluation/_trainer.py) ------------------------------------------------------

    def _padded_widths(self, members: list[int], kept: list[list[np.ndarray]]) -> list[int]:
        return self._trainer.padded_widths(members, kept)

    def _train(self, fold_index: int, kept: list[list[np.ndarray]]) -> list[Trained]:
        return self._trainer.train(fold_index, kept)

    # -- scoring ----------------------------------------------------------------------------------------

    def _score(self, fold: Fold, kept: list[list[np.ndarray]], trained: list[Trained]) -> list[FoldScore]:
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
                FoldScore(
                    accuracy=accuracy,
                    auroc=robustness,
                    test_accuracy=test_accuracy,
                    test_auroc=test_robustness,
                    epochs=trained[model].epochs,
                )
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
    robustness = ood_auroc(
        logits, ood_logits, scoring.temperature, scoring.auroc_estimator, scoring.score_precision
    )
    return accuracy, robustness


class FoldScore(TypedDict):
    """One mask's objectives in one fold (or averaged over folds), before they become an `Evaluation`."""

    accuracy: float
    auroc: float
    test_accuracy: float | None  # None without a test split
    test_auroc: float | None
    epochs: float  # trained in the fold (an int); averaged over folds, their mean


@dataclass
class _FoldTraining:
    """One fold of an evaluate() call: scores per mask and the groups paused at the screening budget."""

    fold_index: int
    final: list[FoldScore | None]  # per mask, its full-protocol score once it has one
    at_budget: list[FoldScore | None]  # per mask still training at the budget, its score there
    paused: list[tuple[list[int], TrainingRun]] = field(default_factory=list)

    def epochs_trained(self, model: int) -> int:
        """The epochs a mask trained in this fold: its final count, else (screened out) the budget's."""
        score = self.final[model] if self.final[model] is not None else self.at_budget[model]
        assert score is not None
        return int(score["epochs"])


def _averaged(scores: list[FoldScore | None]) -> FoldScore:
    """One mask's fold scores averaged: accuracy, AUROC, test scores (where present) and epochs."""
    present = [score for score in scores if score is not None]
    assert len(present) == len(scores), "a fold has no score for this mask"
    return FoldScore(
        accuracy=float(np.mean([s["accuracy"] for s in present])),
        auroc=float(np.mean([s["auroc"] for s in present])),
        test_accuracy=_mean_or_none([s["test_accuracy"] for s in present]),
        test_auroc=_mean_or_none([s["test_auroc"] for s in present]),
        epochs=float(np.mean([s["epochs"] for s in present])),
    )


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None
