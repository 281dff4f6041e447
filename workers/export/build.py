"""Re-train one mask, write it as a Keras model, and check that the reloaded file scores as the search did."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.head_layout import head_shape
from evoprune.workers.export._check import ExportMismatchError, compare_predictions
from evoprune.workers.export._deploy import Reference, Samples, deploy, expected_names
from evoprune.workers.export.formats import KERAS, REPORT_FORMATS_KEY, every_file_name
from evoprune.workers.export.inputs import FEATURES, RawInputs, ood_inputs, raw_inputs
from evoprune.workers.export.model import (
    export_model,
    full_kept,
    head_cost,
    head_latencies,
    pruned_widths,
)
from evoprune.workers.export.report import ExportCheck, ExportMeasured, RecordedRow
from evoprune.workers.features.feature_set import FeatureSet

MODEL_SUFFIX = ".keras"
PREDICT_BATCH = 64
# int8 calibration reads this many training samples (a seeded draw): the converter records every tensor's
# range over them, and a few hundred cover a head's ranges well at a few seconds of conversion
CALIBRATION_SAMPLES = 200
FOLD_REASON = (
    "each fold trains its own head on its own training rows and the recorded accuracy is the mean over "
    "folds, which no single model has; fold 0 exists for every dataset (the only one without folds), and its "
    "accuracy is checked against its own re-trained accuracy"
)


def build_and_check(
    config: ExperimentConfig,
    feature_set: FeatureSet,
    mask: np.ndarray,
    recorded: RecordedRow,
    target: Path,
    fold: int,
    say: Callable[[str], None],
    formats: Sequence[str] = (KERAS,),
    quantize: str | None = None,
) -> ExportMeasured:
    """Re-train `mask`, write the model of one fold to `target`, reload it and compare; measure the head.

    Args:
        config: the experiment.
        feature_set: its features.
        mask: the mask (bools).
        recorded: the mask's row as the search recorded it (its `accuracy` and `auroc` are reproduced).
        target: the `.keras` file; it and the other formats' files beside it (workers.export.formats
            names them) appear only once every check has passed.
        fold: the fold whose head is exported.
        say: progress lines.
        formats: from workers.export.formats.parse_formats; each file is reloaded in a fresh process.
        quantize: the TFLite file's post-training quantisation (None, "float16", "int8").

    Returns:
        The report's measured part: input, fold, check, head sizes, FLOPs and latency, model parameters,
        and the deployment formats (workers.export._deploy.deploy).

    Raises:
        ExportMismatchError: the re-trained or a reloaded unquantised model does not reproduce the
            recorded scores (ExportConversionError: a converter or runtime failed).

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
    staging = target.with_name(f".{target.stem}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an export that was interrupted
    staging.mkdir()
    try:
        staged = staging / target.name
        built.save(staged)
        say("loading the written file into a fresh model and scoring it")
        loaded = keras.saving.load_model(staged)
        probabilities = np.asarray(loaded.predict(raw.values, batch_size=PREDICT_BATCH, verbose=0))
        comparison = compare_predictions(probabilities, outputs.evaluation_logits, split.labels)
        check: ExportCheck = {
            "split": config.fitness_split,
            "recorded_accuracy": recorded["accuracy"],
            **comparison,
        }
        if not check["reproduced"]:
            raise ExportMismatchError(
                f"the written model scores accuracy {check['exported_accuracy']!r} on fold {fold}'s "
                f"{config.fitness_split} split where the search's head scored "
                f"{check['retrained_accuracy']!r}: "
                f"{check['disagreements']} predictions differ, {check['unexplained']} of them not at a "
                "near-tie of two classes"
            )
        samples = _samples(config, fold, raw, quantize, feature_set.folds[fold].ood)
        reference = Reference(
            split.labels,
            outputs.evaluation_logits,
            config.robustness,
            None
            if samples.ood is None
            else _fold_auroc(config, outputs.evaluation_logits, outputs.ood_logits),
        )
        deployed = deploy(staged, formats, quantize, samples, reference, say)
        _publish(staging, target, expected_names(target.stem, formats, quantize))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
            "cpu_latency_ms": head_latencies(shape, (full_kept(shape), None), (outputs.kept, outputs.params)),
        },
        "model_parameters": {
            "before": exported_parameters - after.parameters + before.parameters,
            "after": exported_parameters,
        },
        **deployed,
    }


def _samples(
    config: ExperimentConfig, fold: int, raw: RawInputs, quantize: str | None, ood_features: np.ndarray
) -> Samples:
    """The inputs every format is run on: the fitness split, the fold's OoD samples, int8 calibration."""
    from evoprune.workers.features.assemble import ood_rows, training_rows

    if raw.kind == FEATURES:
        # a model of a `features:` dataset reads feature vectors: the fold's OoD features are its inputs
        ood, note = (ood_features, None) if len(ood_features) else (None, "the experiment has no OoD sources")
    else:
        ood, note = ood_inputs(config, ood_rows(config, fold), raw)
    calibration = None
    if quantize == "int8":
        rows = training_rows(config, fold)
        rng = np.random.default_rng(config.dataset.split_seed)
        chosen = np.sort(rng.choice(rows, size=min(CALIBRATION_SAMPLES, len(rows)), replace=False))
        calibration = raw_inputs(config, chosen).values
    return Samples(raw.values, ood, calibration, note)


def _fold_auroc(config: ExperimentConfig, logits: np.ndarray, ood_logits: np.ndarray) -> float:
    from evoprune.workers.evaluation.odin import ood_auroc

    robustness = config.robustness
    return ood_auroc(
        logits, ood_logits, robustness.temperature, robustness.auroc_estimator, robustness.score_precision
    )


def _publish(staging: Path, target: Path, names: Sequence[str]) -> None:
    """Move the checked files into place, and remove what a previous export of that name wrote besides.

    The previous export's export.json lists its files; those of a format not written this time are removed,
    so that the folder holds one export only.
    """
    folder = target.parent
    previous = folder / "export.json"
    stale: set[str] = set()
    try:
        listed = json.loads(previous.read_text()).get(REPORT_FORMATS_KEY, {})
        stale = {entry["file"] for entry in listed.values()} & set(every_file_name(target.stem))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # no previous export here, or not one of ours: leave the folder's other files alone
    for name in [*names, *sorted(stale - set(names))]:
        place = folder / name
        if place.is_dir() and not place.is_symlink():
            shutil.rmtree(place)
        elif place.exists() or place.is_symlink():
            place.unlink()
        if name in names:
            os.replace(staging / name, place)
