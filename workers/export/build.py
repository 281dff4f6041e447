"""Re-train one mask, write it as a Keras model, and check that the reloaded file scores as the search did."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.head_layout import head_shape
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.export.model import (
    export_model,
    full_kept,
    head_cost,
    head_latencies,
    pruned_widths,
)
from evoprune.workers.features.feature_set import FeatureSet

MODEL_SUFFIX = ".keras"
# A reloaded model may disagree with the search's logits only on samples whose two best classes are this
# close (relative to the larger logit): the search sums in fixed chunks of 128 terms, a Dense layer in its
# own order, so float32 rounding can differ in the last bits.
TIE_LOGIT_GAP = 1e-5
PREDICT_BATCH = 64
FOLD_REASON = (
    "each fold trains its own head on its own training rows and the recorded accuracy is the mean over "
    "folds, which no single model has; fold 0 exists for every dataset (the only one without folds), and its "
    "accuracy is checked against its own re-trained accuracy"
)


class ExportMismatchError(Exception):
    """The written model does not reproduce what the search recorded."""


def build_and_check(
    config: ExperimentConfig,
    feature_set: FeatureSet,
    mask: np.ndarray,
    recorded: Mapping[str, Any],
    target: Path,
    fold: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Re-train `mask`, write the model of one fold to `target`, reload it and compare; measure the head.

    Args:
        config: the experiment.
        feature_set: its features.
        mask: the mask (bools).
        recorded: the mask's recorded objectives (`accuracy`, `auroc`).
        target: the `.keras` file; it appears only once the check has passed.
        fold: the fold whose head is exported.
        say: progress lines.

    Returns:
        The report's measured part: input, fold, check, head sizes, FLOPs and latency, model parameters.

    Raises:
        ExportMismatchError: the re-trained or the reloaded model does not reproduce the recorded scores.

    """
    import keras

    from evoprune.workers.evaluation.retrain import retrain
    from evoprune.workers.features.assemble import fitness_rows

    shape = head_shape(config.head, feature_set.input_dim, feature_set.num_classes)
    (model,) = retrain(feature_set, config, mask[None, :], keep_weights=True)
    retrained = model.evaluation
    if (retrained.accuracy, retrained.auroc) != (recorded["accuracy"], recorded["auroc"]):
        raise ExportMismatchError(
            f"re-training the mask gives accuracy {retrained.accuracy!r} and AUROC {retrained.auroc!r}, "
            f"but the search recorded {recorded['accuracy']!r} and {recorded['auroc']!r}: the protocol "
            "or the software changed since the experiment ran"
        )
    outputs = model.folds[fold]
    split = feature_set.folds[fold].evaluation
    say(f"reading the {len(split)} samples of fold {fold}'s {config.fitness_split} split")
    raw = raw_inputs(config, fitness_rows(config, fold))
    if not np.array_equal(raw.labels, split.labels):
        raise ExportMismatchError(
            f"{config.dataset.source} no longer lists its samples as when the features were cached: the "
            f"labels of fold {fold}'s {config.fitness_split} split differ"
        )
    built = export_model(config.backbone, raw, shape, outputs.kept, outputs.params)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.stem}.partial{MODEL_SUFFIX}")
    try:
        built.save(staging)
        say("loading the written file into a fresh model and scoring it")
        loaded = keras.saving.load_model(staging)
        probabilities = np.asarray(loaded.predict(raw.values, batch_size=PREDICT_BATCH, verbose=0))
        check = compare_predictions(probabilities, outputs.evaluation_logits, split.labels)
        check = {"split": config.fitness_split, "recorded_accuracy": recorded["accuracy"], **check}
        if not check["reproduced"]:
            raise ExportMismatchError(
                f"the written model scores accuracy {check['exported_accuracy']!r} on fold {fold}'s "
                f"{config.fitness_split} split where the search's head scored "
                f"{check['retrained_accuracy']!r}: "
                f"{check['disagreements']} predictions differ, {check['unexplained']} of them not at a "
                "near-tie of two classes"
            )
        os.replace(staging, target)
    finally:
        if staging.exists():
            staging.unlink()
    say("measuring the head before and after pruning")
    before = head_cost((*shape.widths, shape.num_classes), shape.hidden_bias)
    after = head_cost(pruned_widths(shape, outputs.kept), shape.hidden_bias)
    exported_parameters = int(built.count_params())
    return {
        "input": {"kind": raw.kind, "shape": list(raw.sample_shape), "pixel_max": raw.pixel_max},
        "backbone": config.backbone.name,
        "mode": config.head.mode,
        "fold": {"exported": fold, "folds": len(feature_set.folds), "why": FOLD_REASON},
        "check": check,
        "head": {
            "widths": {"before": list(before.widths), "after": list(after.widths)},
            "parameters": {"before": before.parameters, "after": after.parameters},
            "flops": {"before": before.flops, "after": after.flops},
            "flops_note": "per image: 2 per kernel weight, 1 per bias",
            "cpu_latency_ms": head_latencies(
                shape, {"before": (full_kept(shape), None), "after": (outputs.kept, outputs.params)}
            ),
        },
        "model_parameters": {
            "before": exported_parameters - after.parameters + before.parameters,
            "after": exported_parameters,
        },
    }


def compare_predictions(probabilities: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Compare a reloaded model's probabilities with the search's logits on the same samples.

    Args:
        probabilities: (N, C) from the exported model.
        logits: (N, C) the re-trained head's logits (those the recorded accuracy was computed from).
        labels: (N,) true classes.

    Returns:
        Both accuracies, how many predictions differ, how many of those are not at a near-tie (the top two
        logits within TIE_LOGIT_GAP of each other, relatively), the largest probability difference, and
        `reproduced`: no unexplained difference.

    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = shifted / shifted.sum(axis=1, keepdims=True)
    exported = np.argmax(probabilities, axis=1)
    searched = np.argmax(logits, axis=1)
    differ = np.flatnonzero(exported != searched)
    top_two = np.sort(logits[differ], axis=1)[:, -2:]
    gap = (top_two[:, 1] - top_two[:, 0]) / np.maximum(1.0, np.abs(top_two[:, 1]))
    unexplained = int(np.count_nonzero(gap > TIE_LOGIT_GAP))
    exported_accuracy = float(np.mean(exported == labels))
    retrained_accuracy = float(np.mean(searched == labels))
    return {
        "samples": len(labels),
        "retrained_accuracy": retrained_accuracy,
        "exported_accuracy": exported_accuracy,
        "exact": exported_accuracy == retrained_accuracy and len(differ) == 0,
        "disagreements": len(differ),
        "unexplained": unexplained,
        "max_probability_difference": float(np.max(np.abs(probabilities - expected))),
        "reproduced": unexplained == 0,
    }
