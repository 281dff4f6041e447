"""Re-training masks with the fitness protocol, keeping what the analyses need: logits and trained heads."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from evoprune.shared.config import ExperimentConfig, RobustnessConfig
from evoprune.shared.masks import MaskError, active_fraction
from evoprune.shared.objectives import Evaluation
from evoprune.workers.evaluation.evaluator import BatchedEvaluator, _objectives
from evoprune.workers.evaluation.head_layout import active_indices
from evoprune.workers.features.feature_set import FeatureSet, Fold


@dataclass(frozen=True)
class FoldOutputs:
    """One trained head on one fold: its weights and its logits on every split it was scored on."""

    params: tuple[np.ndarray, ...]  # unpadded kernels, hidden biases, output bias; () when not kept
    kept: tuple[np.ndarray, ...]  # kept indices per position (input, hidden...)
    epochs: int
    evaluation_logits: np.ndarray  # (N, C) on the fitness split
    ood_logits: np.ndarray  # (M, C) on the fold's OoD samples
    test_logits: np.ndarray | None = None  # with fitness_split = validation
    test_ood_logits: np.ndarray | None = None


@dataclass(frozen=True)
class RetrainedModel:
    """A mask re-trained on every fold, with the objectives its logits give (equal to its fitness)."""

    mask: np.ndarray
    folds: tuple[FoldOutputs, ...]
    evaluation: Evaluation


class _LogitsEvaluator(BatchedEvaluator):
    """The batched evaluator, stopped one step earlier: it hands back logits instead of only scores."""

    def fold_outputs(self, fold_index: int, kept: list[list[np.ndarray]]) -> list[FoldOutputs]:
        fold = self.feature_set.folds[fold_index]
        trained = self._train(fold_index, kept)
        members = list(range(len(kept)))
        widths = self._padded_widths(members, kept)
        # Scored exactly as BatchedEvaluator._score does, so the objectives match bit for bit.
        params = tuple(np.asarray(a) for a in self._padded_trained(trained, widths))
        indices = np.full((len(members), widths[0]), self.shape.widths[0], dtype=np.int32)
        for row in members:
            indices[row, : len(kept[row][0])] = kept[row][0]
        evaluation, ood, test, test_ood = self._logits_on(params, indices, fold)
        return [
            FoldOutputs(
                params=tuple(trained[row].params),
                kept=tuple(kept[row]),
                epochs=trained[row].epochs,
                evaluation_logits=evaluation[row],
                ood_logits=ood[row],
                test_logits=None if test is None else test[row],
                test_ood_logits=None if test_ood is None else test_ood[row],
            )
            for row in members
        ]

    def _logits_on(
        self, params: tuple, indices: np.ndarray, fold: Fold
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(P, rows, C) logits on the fitness split, the OoD samples and, when the fold has them, test."""
        from keras import ops

        tensors = tuple(ops.convert_to_tensor(a) for a in params)
        index_tensor = ops.convert_to_tensor(indices)
        evaluation = self._all_logits(tensors, index_tensor, fold.evaluation.features)
        ood = self._all_logits(tensors, index_tensor, fold.ood)
        if fold.test is None or fold.test_ood is None:
            return evaluation, ood, None, None
        test = self._all_logits(tensors, index_tensor, fold.test.features)
        return evaluation, ood, test, self._all_logits(tensors, index_tensor, fold.test_ood)


def retrain(
    feature_set: FeatureSet,
    config: ExperimentConfig,
    masks: np.ndarray,
    *,
    group_size: int | None = None,
    keep_weights: bool | Collection[int] = True,
) -> list[RetrainedModel]:
    """Train one head per mask with the experiment's protocol and keep its logits and weights.

    Fitness is a deterministic function of (features, mask, protocol), so the objectives recomputed here
    equal the ones recorded during the search (evaluations.parquet) exactly.

    Args:
        feature_set: the experiment's features (workers.features.assemble.load_feature_set).
        config: the experiment config (head, training, robustness).
        masks: (P, L) bools.
        group_size: models trained in one computation (the evaluator's default when None).
        keep_weights: keep the trained weights of every model (True), of none (False), or of the models
            at these positions in `masks`; a head on 2048 features holds megabytes, logits only kilobytes.

    Returns:
        One RetrainedModel per mask, in order.

    Raises:
        MaskError: masks of the wrong shape.

    """
    evaluator = _LogitsEvaluator(feature_set, config, group_size=group_size)
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.shape[1] != evaluator.mask_length:
        raise MaskError(f"masks must be an array of shape (P, {evaluator.mask_length}), got {masks.shape}")
    masks = masks.astype(bool)
    kept = [active_indices(evaluator.shape, mask) for mask in masks]
    # The same grouping as BatchedEvaluator.evaluate: similar widths together, little padding.
    by_width = sorted(range(len(kept)), key=lambda m: tuple(len(indices) for indices in kept[m]))
    size = evaluator.group_size
    groups = [by_width[start : start + size] for start in range(0, len(by_width), size)]
    outputs: list[list[FoldOutputs]] = [[] for _ in kept]
    for fold_index in range(len(feature_set.folds)):
        for group in groups:
            for member, result in zip(
                group, evaluator.fold_outputs(fold_index, [kept[m] for m in group]), strict=True
            ):
                outputs[member].append(result if _keeps(keep_weights, member) else replace(result, params=()))
    return [
        RetrainedModel(mask, tuple(folds), _evaluation(mask, folds, feature_set, config.robustness))
        for mask, folds in zip(masks, outputs, strict=True)
    ]


def _keeps(keep_weights: bool | Collection[int], member: int) -> bool:
    return keep_weights if isinstance(keep_weights, bool) else member in keep_weights


def _evaluation(
    mask: np.ndarray, folds: list[FoldOutputs], feature_set: FeatureSet, scoring: RobustnessConfig
) -> Evaluation:
    scores = []
    tests = []
    for outputs, fold in zip(folds, feature_set.folds, strict=True):
        scores.append(_objectives(outputs.evaluation_logits, outputs.ood_logits, fold.evaluation, scoring))
        if outputs.test_logits is not None and outputs.test_ood_logits is not None and fold.test is not None:
            tests.append(_objectives(outputs.test_logits, outputs.test_ood_logits, fold.test, scoring))
    return Evaluation(
        accuracy=float(np.mean([accuracy for accuracy, _ in scores])),
        active_fraction=active_fraction(mask),
        auroc=float(np.mean([robustness for _, robustness in scores])),
        test_accuracy=float(np.mean([accuracy for accuracy, _ in tests])) if tests else None,
        test_auroc=float(np.mean([robustness for _, robustness in tests])) if tests else None,
        epochs=float(np.mean([outputs.epochs for outputs in folds])),
        worker="retrain",
    )
