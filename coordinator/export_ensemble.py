"""`evoprune export --ensemble`: several front members as one model on one backbone, outputs combined."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np

from evoprune.coordinator.analysis.inputs import (
    AnalysisError,
    ResultsInput,
    check_features,
    load_features,
    read_results,
)
from evoprune.coordinator.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    EXPORTED_FOLD,
    REPORT_NAME,
    ExportError,
    Log,
    checked_formats,
    checked_out,
    given_mask,
    results_location,
    written_into,
)
from evoprune.coordinator.results.fronts import DEFAULT_KIND, FRONT_KINDS
from evoprune.coordinator.results.layout import ANALYSIS_DIR, EXPORTS_DIR
from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.masks import MaskError, decode_mask
from evoprune.shared.parquet_files import read_verified_parquet
from evoprune.shared.storage import StoragePath
from evoprune.workers.analysis.windows import window_bounds, window_members
from evoprune.workers.evaluation.ensemble_scores import COMBINES, MEAN, VOTE
from evoprune.workers.export.build import MODEL_SUFFIX
from evoprune.workers.export.ensemble import Member
from evoprune.workers.export.report import EnsembleMeasured, RecordedRow, recorded_objectives
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_set import FeatureSet

DEFAULT_COMBINE = MEAN
WINDOW_PATTERN = re.compile(r"^\s*(\d{1,3})\s*-\s*(\d{1,3})\s*$")
ANALYSIS_ENSEMBLES = "ensembles.parquet"
# the analysis's column that each combination reproduces
ANALYSIS_COLUMN = {MEAN: "softmax_accuracy", VOTE: "accuracy"}


class AnalysisFigure(TypedDict):
    """The analysis's accuracy of an ensemble of the same members (analysis/ensembles.parquet)."""

    file: str
    window: list[int]
    column: str  # softmax_accuracy (mean) or accuracy (vote)
    accuracy: float
    comparable: bool  # False for k folds: the analysis's figure is a mean over folds
    reproduced: NotRequired[bool]  # whether the exported file scores it exactly


class MemberEntry(TypedDict):
    """One member in export.json."""

    mask: str
    active_bits: int
    objectives: dict[str, float]


class EnsembleObjectives(TypedDict):
    """The ensemble's own scores: accuracy on fold 0's fitness split, AUROC of the file's outputs."""

    accuracy: float
    auroc: float | None


class EnsembleDescription(TypedDict):
    """How an ensemble's members were chosen: a window of the aggregated front, or listed masks."""

    members_from: str  # window or masks
    combine: str
    window: NotRequired[list[int]]  # [lower, upper] percentiles
    accuracy_range: NotRequired[list[float]]  # the window's bounds on the front's accuracies
    kind: NotRequired[str]  # the front the window is taken from
    front_size: NotRequired[int]


class EnsemblePick(EnsembleDescription):
    """export.json's `pick` of an ensemble: its description, and `rule` ensemble."""

    rule: str


class EnsembleReport(EnsembleMeasured):
    """export.json of an ensemble."""

    format: str
    version: int
    experiment: str
    results_dir: str
    created: str
    model: str
    pick: EnsemblePick
    members: list[MemberEntry]
    mask_length: int
    objectives: EnsembleObjectives
    analysis: AnalysisFigure | None
    seconds: float


@dataclass(frozen=True)
class EnsembleChoice:
    """The members of an ensemble to export, and how they were chosen."""

    masks: np.ndarray  # (P, L) bools
    rows: list[RecordedRow]  # each member's recorded row
    combine: str
    description: EnsembleDescription
    name: str  # the folder under exports/ it goes to by default


def parse_window(text: str) -> tuple[int, int]:
    """A percentile window as the analysis builds them, written LOWER-UPPER (e.g. `85-95`).

    Args:
        text: the option's value.

    Returns:
        (lower, upper) percentiles.

    Raises:
        ExportError: not two whole numbers with 0 <= LOWER <= UPPER <= 100; `field` is ensemble.

    """
    matched = WINDOW_PATTERN.match(text)
    if matched is None:
        raise ExportError(
            f"--ensemble {text!r} is not a percentile window; write it LOWER-UPPER, e.g. 85-95 (the "
            "analysis's windows are 50-60, 55-65, ..., 85-95)",
            field="ensemble",
        )
    lower, upper = int(matched.group(1)), int(matched.group(2))
    if not 0 <= lower <= upper <= 100:
        raise ExportError(
            f"--ensemble {lower}-{upper}: a percentile window needs 0 <= LOWER <= UPPER <= 100",
            field="ensemble",
        )
    return lower, upper


def choose_ensemble(
    results_dir: StoragePath | str,
    *,
    window: str | None = None,
    masks: Sequence[str] | str | None = None,
    combine: str = DEFAULT_COMBINE,
    kind: str = DEFAULT_KIND,
) -> tuple[ResultsInput, EnsembleChoice]:
    """Read a finished experiment's results and choose an ensemble's members, without TensorFlow.

    A window takes the members of the aggregated front (of `kind`) whose accuracy lies between the
    window's percentiles of the front's accuracies, both ends included, as the analysis's ensembles do
    (workers.analysis.windows); listed masks must each have been evaluated with the full protocol.

    Args:
        results_dir: the experiment's results directory: a local path, or an s3:// or gs:// URI.
        window: a percentile window, `LOWER-UPPER`.
        masks: the members' hex masks, listed or comma-separated (instead of a window).
        combine: `mean` (softmax probabilities averaged) or `vote` (vote shares; argmax = majority vote).
        kind: the front a window is taken from: `population` or `archive`.

    Returns:
        The results read and the choice.

    Raises:
        ExportError: both or neither of window and masks, a malformed window or mask, an empty window,
            an unknown or repeated mask, an unknown combination or kind; `field` names the option.

    """
    if (window is None) == (masks is None):
        raise ExportError(
            "give either a percentile window (--ensemble LOWER-UPPER) or the members' masks "
            "(--ensemble-masks HEX,HEX,...), not both or neither",
            field="ensemble",
        )
    if combine not in COMBINES:
        raise ExportError(f"unknown combination {combine!r}; choose one of {', '.join(COMBINES)}", "combine")
    if kind not in FRONT_KINDS:
        raise ExportError(f"unknown front kind {kind!r}; choose one of {', '.join(FRONT_KINDS)}", "kind")
    bounds = parse_window(window) if window is not None else None
    try:
        inputs = read_results(results_location(results_dir), front_kind=kind)
    except AnalysisError as error:
        raise ExportError(str(error)) from None
    if bounds is not None:
        return inputs, _window_choice(inputs, bounds, combine, kind)
    listed = [masks] if isinstance(masks, str) else list(masks or ())
    texts = [text.strip().lower() for value in listed for text in value.split(",")]
    if not texts or any(not text for text in texts):
        raise ExportError("--ensemble-masks needs one or more hex masks, comma-separated", "ensemble_masks")
    repeated = sorted({text for text in texts if texts.count(text) > 1})
    if repeated:
        raise ExportError(
            f"--ensemble-masks lists mask {repeated[0][:24]}… more than once; each member once",
            "ensemble_masks",
        )
    rows = []
    for text in texts:
        try:
            rows.append(given_mask(inputs, text, option="--ensemble-masks").row)
        except MaskError as error:
            raise ExportError(f"--ensemble-masks: {error}", "ensemble_masks") from None
        except ExportError as error:
            raise ExportError(str(error), "ensemble_masks") from None
    digest = hashlib.sha256(",".join(sorted(texts)).encode()).hexdigest()[:12]
    masks_chosen = np.stack([decode_mask(row["mask"], inputs.mask_length) for row in rows])
    description: EnsembleDescription = {"members_from": "masks", "combine": combine}
    return inputs, EnsembleChoice(
        masks_chosen, rows, combine, description, f"ensemble-{combine}-masks-{digest}"
    )


def _window_choice(inputs: ResultsInput, bounds: tuple[int, int], combine: str, kind: str) -> EnsembleChoice:
    accuracies = np.array([row["accuracy"] for row in inputs.aggregate], dtype=np.float64)
    members = window_members(accuracies, bounds)
    low, high = window_bounds(accuracies, bounds)
    if len(members) == 0:
        raise ExportError(
            f"--ensemble {bounds[0]}-{bounds[1]} holds no member of the aggregated {kind} front: its "
            f"{len(accuracies)} accuracies jump over [{low:.6g}, {high:.6g}]; choose a wider window",
            field="ensemble",
        )
    description: EnsembleDescription = {
        "members_from": "window",
        "combine": combine,
        "window": list(bounds),
        "accuracy_range": [low, high],
        "kind": kind,
        "front_size": len(accuracies),
    }
    name = f"ensemble-{combine}-{bounds[0]}-{bounds[1]}"
    return EnsembleChoice(
        inputs.masks[members], [inputs.aggregate[m].copy() for m in members], combine, description, name
    )


def export_ensemble(
    results_dir: StoragePath | str,
    *,
    window: str | None = None,
    masks: Sequence[str] | str | None = None,
    combine: str = DEFAULT_COMBINE,
    kind: str = DEFAULT_KIND,
    out: StoragePath | str | None = None,
    feature_set: FeatureSet | None = None,
    log: Log | None = None,
    formats: Sequence[str] | str | None = None,
    quantize: str | None = None,
) -> EnsembleReport:
    """Export an ensemble of front members as one Keras model (and other formats) and check it.

    The members are re-trained from their masks (their objectives equal the recorded ones exactly), put
    as pruned heads behind one backbone, their outputs averaged (`mean`: softmax probabilities; `vote`:
    vote shares), saved, loaded back and run on fold 0's fitness split from the raw inputs; then converted
    and reloaded in fresh processes as a single export is. The model's accuracy there is the ensemble's
    as workers.analysis.ensembles scores it; when the analysis has scored the same members
    (analysis/ensembles.parquet) on a dataset without folds, its figure must be the same number. Results
    on object storage are read there and the export uploaded to their exports/NAME/, export.json last, as
    `coordinator.export.export_model` does.

    Args:
        results_dir: the experiment's results directory: a local path, or an s3:// or gs:// URI.
        window: a percentile window `LOWER-UPPER` of the aggregated front's accuracies.
        masks: the members' hex masks (instead of a window).
        combine: `mean` or `vote`.
        kind: the front a window is taken from: `population` (default) or `archive`.
        out: the local `.keras` file to write (default results_dir/exports/ensemble-COMBINE-.../model.keras).
        feature_set: the experiment's features, if already loaded.
        log: called with a line per stage.
        formats: keras, saved_model, tflite, onnx (keras is always written).
        quantize: the TFLite file's post-training quantisation: float16 or int8.

    Returns:
        The report written to export.json.

    Raises:
        ExportError: bad input (see `choose_ensemble`, and as `export_model`'s).
        ExportMismatchError: a member or the reloaded model does not reproduce what was recorded, or the
            model's accuracy is not the analysis's (then nothing is written).

    """
    from evoprune.workers.export.ensemble import build_and_check_ensemble

    say = log or (lambda line: None)
    started = time.perf_counter()
    chosen_formats = checked_formats(formats, quantize)
    out_file = checked_out(out)
    location = results_location(results_dir)
    inputs, choice = choose_ensemble(location, window=window, masks=masks, combine=combine, kind=kind)
    target = _target(location, out_file, choice)
    say(f"exporting an ensemble of {len(choice.rows)} members ({combine})")
    try:
        if feature_set is None:
            say("loading the experiment's features (extracted again if the feature cache lost them)")
            feature_set = load_features(inputs, progress=log is not None)
        check_features(inputs, feature_set)
    except AnalysisError as error:
        raise ExportError(str(error)) from None
    analysis = analysis_figure(location, choice, len(feature_set.folds))
    with written_into(target.parent, say) as folder:
        try:
            measured = build_and_check_ensemble(
                inputs.config,
                feature_set,
                choice.masks,
                [Member(row["mask"], row["accuracy"], row["auroc"]) for row in choice.rows],
                folder / target.name,
                EXPORTED_FOLD,
                say,
                combine,
                chosen_formats,
                quantize,
                None if analysis is None or not analysis["comparable"] else analysis["accuracy"],
            )
        except (DatasetError, OSError) as error:
            raise ExportError(f"the experiment's dataset cannot be read: {error}") from None
        if analysis is not None and analysis["comparable"]:
            analysis["reproduced"] = measured["check"]["exported_accuracy"] == analysis["accuracy"]
        members = [
            MemberEntry(
                mask=row["mask"],
                active_bits=int(np.count_nonzero(bits)),
                objectives=recorded_objectives(row),
            )
            for row, bits in zip(choice.rows, choice.masks, strict=True)
        ]
        report = EnsembleReport(
            format=EXPORT_FORMAT,
            version=EXPORT_VERSION,
            experiment=inputs.config.name,
            results_dir=str(inputs.results_dir),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            model=str(target),
            pick={"rule": "ensemble", **choice.description},
            members=members,
            mask_length=int(choice.masks.shape[1]),
            objectives=EnsembleObjectives(
                accuracy=measured["ensemble"]["accuracy"], auroc=measured["formats"]["keras"]["auroc"]
            ),
            analysis=analysis,
            seconds=0.0,
            **measured,
        )
        report["seconds"] = round(time.perf_counter() - started, 3)
        write_atomic(folder / REPORT_NAME, json.dumps(report, indent=2))
    return report


def analysis_figure(results_dir: StoragePath, choice: EnsembleChoice, folds: int) -> AnalysisFigure | None:
    """The analysis's accuracy for an ensemble of the same members, if the analysis has scored one.

    Args:
        results_dir: the experiment's results directory.
        choice: the ensemble to export.
        folds: the dataset's folds.

    Returns:
        None when no row of analysis/ensembles.parquet has these members (or the analysis predates the
        mean-softmax column); else its window, the column that the combination reproduces, its
        accuracy, and `comparable`: False for a k-fold dataset, whose analysis figure is a mean over the
        folds' ensembles that no single model has (an export is fold 0's).

    """
    column = ANALYSIS_COLUMN[choice.combine]
    try:
        table = read_verified_parquet(results_dir / ANALYSIS_DIR / ANALYSIS_ENSEMBLES)
    except (OSError, ValueError):
        return None  # no analysis, or one being replaced this moment: there is nothing to compare with
    if column not in table.column_names:
        return None
    members = sorted(row["mask"] for row in choice.rows)
    for row in table.to_pylist():
        if sorted(row["member_masks"] or []) == members and row[column] is not None:
            return AnalysisFigure(
                file=f"{ANALYSIS_DIR}/{ANALYSIS_ENSEMBLES}",
                window=[row["window_lower"], row["window_upper"]],
                column=column,
                accuracy=row[column],
                comparable=folds == 1,
            )
    return None


def _target(results_dir: StoragePath, out: Path | None, choice: EnsembleChoice) -> StoragePath:
    if out is None:
        return results_dir / EXPORTS_DIR / choice.name / f"model{MODEL_SUFFIX}"
    out = Path(out)
    if out.suffix != MODEL_SUFFIX:
        raise ExportError(f"--out {out}: a Keras model file must end in {MODEL_SUFFIX}")
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give the path of the {MODEL_SUFFIX} file to write")
    return out


def ensemble_name(choice: EnsembleChoice) -> str:
    """The folder under exports/ that an export of this ensemble goes to by default."""
    return choice.name
