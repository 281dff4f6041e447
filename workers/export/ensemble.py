"""Re-train an ensemble's members, write them as one Keras model on one backbone, check the reloaded file."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.head_layout import head_shape
from evoprune.workers.export._check import ExportMismatchError, compare_predictions, probability_auroc
from evoprune.workers.export._deploy import Reference, deploy, expected_names
from evoprune.workers.export.build import FOLD_REASON, PREDICT_BATCH, _publish, _samples
from evoprune.workers.export.formats import KERAS
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.export.model import ensemble_model, head_cost, pruned_widths
from evoprune.workers.export.report import (
    BeforeAfter,
    EnsembleCheck,
    EnsembleMeasured,
    EnsembleScores,
    FoldInfo,
    HeadsSize,
    HeadWidths,
    InputInfo,
)
from evoprune.workers.features.feature_set import FeatureSet

# the outputs compared with a file's are probabilities; compare_predictions takes logits, and the log of a
# probability is a logit up to a constant per sample (a vote share of 0 becomes float32's smallest number)
_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class Member:
    """One member of an ensemble: its mask and the objectives the search recorded for it."""

    mask: str  # hex
    accuracy: float
    auroc: float


def build_and_check_ensemble(
    config: ExperimentConfig,
    feature_set: FeatureSet,
    masks: np.ndarray,
    recorded: Sequence[Member],
    target: Path,
    fold: int,
    say: Callable[[str], None],
    combine: str,
    formats: Sequence[str] = (KERAS,),
    quantize: str | None = None,
    analysis_accuracy: float | None = None,
) -> EnsembleMeasured:
    """Re-train every member, write the ensemble model of one fold to `target`, reload it and compare.

    The expected outputs are computed from the re-trained heads' logits by workers.evaluation.ensemble_scores
    (`combined_outputs`), as the analysis scores its ensembles; the reloaded file must give the same
    prediction on every sample, float rounding aside only at near-ties, as a single export must.

    Args:
        config: the experiment.
        feature_set: its features.
        masks: (P, L) the members' masks (bools).
        recorded: per member its mask and recorded objectives, in `masks` order.
        target: the `.keras` file; it and the other formats' files appear once every check has passed.
        fold: the fold whose heads are exported.
        say: progress lines.
        combine: `mean` (softmax probabilities averaged) or `vote` (vote shares).
        formats: from workers.export.formats.parse_formats; each file is reloaded in a fresh process.
        quantize: the TFLite file's post-training quantisation (None, "float16", "int8").
        analysis_accuracy: the analysis's accuracy of the same ensemble, which the file must reproduce
            exactly (None: no analysis to compare with).

    Returns:
        The report's measured part: input, fold, the ensemble's accuracy (`check`), its AUROC from the
        model's outputs, the heads' sizes and the deployment formats.

    Raises:
        ExportMismatchError: a re-trained member or the reloaded model does not reproduce what was recorded
            (ExportConversionError: a converter or runtime failed).

    """
    import keras

    from evoprune.workers.evaluation.ensemble_scores import (
        combined_accuracy,
        combined_outputs,
        ensemble_objectives,
    )
    from evoprune.workers.evaluation.retrain import retrain
    from evoprune.workers.features.assemble import fitness_rows

    shape = head_shape(config.head, feature_set.input_dim, feature_set.num_classes)
    say(f"re-training the {len(masks)} members from their masks")
    models = retrain(feature_set, config, masks, keep_weights=True)
    for model, row in zip(models, recorded, strict=True):
        retrained = model.evaluation
        if (retrained.accuracy, retrained.auroc) != (row.accuracy, row.auroc):
            raise ExportMismatchError(
                f"re-training member {row.mask[:24]}… gives accuracy {retrained.accuracy!r} and AUROC "
                f"{retrained.auroc!r}, but the search recorded {row.accuracy!r} and {row.auroc!r}: "
                "the protocol or the software changed since the experiment ran"
            )
    outputs = [model.folds[fold] for model in models]
    split = feature_set.folds[fold].evaluation
    logits = [member.evaluation_logits for member in outputs]
    expected = combined_outputs(logits, combine)
    ensemble_accuracy = combined_accuracy(logits, split.labels, combine)
    robustness = config.robustness
    vote_accuracy, analysis_auroc = ensemble_objectives(
        logits,
        [member.ood_logits for member in outputs],
        split,
        feature_set.num_classes,
        robustness.temperature,
        robustness.auroc_estimator,
    )
    say(f"reading the {len(split)} samples of fold {fold}'s {config.fitness_split} split")
    raw = raw_inputs(config, fitness_rows(config, fold))
    if not np.array_equal(raw.labels, split.labels):
        raise ExportMismatchError(
            f"{config.dataset.source} no longer lists its samples as when the features were cached: the "
            f"labels of fold {fold}'s {config.fitness_split} split differ"
        )
    built = ensemble_model(
        config.backbone, raw, shape, [(member.kept, member.params) for member in outputs], combine
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.stem}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an export that was interrupted
    staging.mkdir()
    reference_logits = np.log(np.maximum(expected, _TINY))
    try:
        staged = staging / target.name
        built.save(staged)
        say("loading the written file into a fresh model and scoring it")
        loaded = keras.saving.load_model(staged)
        probabilities = np.asarray(loaded.predict(raw.values, batch_size=PREDICT_BATCH, verbose=0))
        comparison = compare_predictions(probabilities, reference_logits, split.labels)
        check: EnsembleCheck = {"split": config.fitness_split, "combine": combine, **comparison}
        if analysis_accuracy is not None and check["exported_accuracy"] != analysis_accuracy:
            raise ExportMismatchError(
                f"the written ensemble scores accuracy {check['exported_accuracy']!r} on fold {fold}'s "
                f"{config.fitness_split} split where the analysis recorded {analysis_accuracy!r} for the "
                "same members: the protocol or the software changed since the analysis ran"
            )
        if not check["reproduced"]:
            raise ExportMismatchError(
                f"the written ensemble scores accuracy {check['exported_accuracy']!r} on fold {fold}'s "
                f"{config.fitness_split} split where its members' heads combined ({combine}) score "
                f"{check['retrained_accuracy']!r}: {check['disagreements']} predictions differ, "
                f"{check['unexplained']} of them not at a near-tie of two classes"
            )
        samples = _samples(config, fold, raw, quantize, feature_set.folds[fold].ood)
        expected_auroc = None
        if samples.ood is not None:
            expected_ood = combined_outputs([member.ood_logits for member in outputs], combine)
            expected_auroc = probability_auroc(expected, expected_ood, robustness)
        reference = Reference(split.labels, reference_logits, robustness, expected_auroc)
        deployed = deploy(staged, formats, quantize, samples, reference, say)
        _publish(staging, target, expected_names(target.stem, formats, quantize))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    before = head_cost((*shape.widths, shape.num_classes), shape.hidden_bias)
    after = [head_cost(pruned_widths(shape, member.kept), shape.hidden_bias) for member in outputs]
    measured = EnsembleMeasured(
        formats=deployed["formats"],
        quantize=deployed["quantize"],
        converter=deployed["converter"],
        input=InputInfo(kind=raw.kind, shape=list(raw.sample_shape), pixel_max=raw.pixel_max),
        backbone=config.backbone.name,
        mode=config.head.mode,
        fold=FoldInfo(exported=fold, folds=len(feature_set.folds), why=FOLD_REASON),
        check=check,
        ensemble=EnsembleScores(
            combine=combine,
            accuracy=ensemble_accuracy,
            vote_accuracy=vote_accuracy,
            mean_softmax_accuracy=combined_accuracy(logits, split.labels, "mean"),
            analysis_auroc=analysis_auroc,
            analysis_auroc_note="the analysis's ensemble AUROC: the members' ODIN scores averaged, which a "
            "model outputting combined probabilities cannot give; `formats` holds the AUROC of the file's "
            "own outputs",
        ),
        head=HeadsSize(
            widths=HeadWidths(before=list(before.widths), after=[list(cost.widths) for cost in after]),
            parameters=BeforeAfter(
                before=before.parameters * len(after), after=sum(cost.parameters for cost in after)
            ),
            flops=BeforeAfter(before=before.flops * len(after), after=sum(cost.flops for cost in after)),
            flops_note="per image, all heads together: 2 per kernel weight, 1 per bias",
        ),
        model_parameters=int(built.count_params()),
    )
    if "float_tflite_bytes" in deployed:
        measured["float_tflite_bytes"] = deployed["float_tflite_bytes"]
    return measured
