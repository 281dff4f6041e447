"""`evoprune export`: one front member as a deployable, physically smaller model in the formats asked for."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND, FRONT_KINDS, FrontRow
from evoprune.coordinator.results.layout import EXPORT_REPORT_NAME, EXPORTS_DIR
from evoprune.coordinator.results.picks import (
    KNEE_METHOD,
    FeasibilityNote,
    PickError,
    feasible_first,
    front_rows,
    has_kinds,
    pick,
)
from evoprune.coordinator.results.writer import full_fidelity
from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.masks import MaskError, decode_mask, encode_mask
from evoprune.shared.storage import ObjectPath, StoragePath, is_object_uri, storage_path, upload_folder
from evoprune.workers.export.build import MODEL_SUFFIX, build_and_check
from evoprune.workers.export.formats import FormatError, check_request, parse_formats
from evoprune.workers.export.report import ExportMeasured, RecordedRow, recorded_objectives
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_set import FeatureSet

EXPORT_FORMAT = "evoprune-export"
EXPORT_VERSION = 1
# the export folders' names are the artifacts listing's, which serves them
REPORT_NAME = EXPORT_REPORT_NAME
# k-fold datasets train one head per fold; fold 0's is exported (workers.export.build.FOLD_REASON says why)
EXPORTED_FOLD = 0
Log = Callable[[str], None]


class ExportError(Exception):
    """A request that cannot be exported; the message names what is wrong (bad input: exit status 2).

    `field` names the request option at fault (mask, run, kind, pick, min_accuracy), when one is.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PickDescription(TypedDict):
    """How the exported member was chosen (export.json's `pick`): a rule on a front, or a given mask."""

    rule: str  # a pick rule, or "mask"
    run: NotRequired[int]
    kind: NotRequired[str]
    front_size: NotRequired[int]
    min_accuracy: NotRequired[float | None]  # the floor of `smallest`
    method: NotRequired[str]  # how `knee` finds the knee
    constraints: NotRequired[FeasibilityNote]  # a constrained front: which members the pick chose among


class ExportReport(ExportMeasured):
    """export.json of one member: what was exported from where, and how it was chosen, then measured."""

    format: str
    version: int
    experiment: str
    results_dir: str
    created: str
    model: str
    pick: PickDescription
    mask: str
    mask_length: int
    active_bits: int
    objectives: dict[str, float]  # recorded: accuracy, active_fraction, auroc (and the test scores)
    seconds: float


@dataclass(frozen=True)
class Choice:
    """The front member (or given mask) to export, and how it was chosen."""

    mask: np.ndarray
    row: RecordedRow  # its recorded row: the front's, or the evaluation's of a given mask
    rule: str  # a pick rule, or "mask"
    description: PickDescription


def export_model(
    results_dir: StoragePath | str,
    *,
    mask: str | None = None,
    rule: str | None = None,
    min_accuracy: float | None = None,
    run: int = AGGREGATE_RUN,
    kind: str = DEFAULT_KIND,
    out: StoragePath | str | None = None,
    feature_set: FeatureSet | None = None,
    log: Log | None = None,
    formats: Sequence[str] | str | None = None,
    quantize: str | None = None,
) -> ExportReport:
    """Export one front member of a finished experiment as a Keras model (and other formats) and check it.

    The head is re-trained from its mask with the experiment's protocol (fitness is deterministic, so the
    re-trained objectives equal the recorded ones exactly), put behind the backbone, saved, loaded back with
    `keras.saving.load_model`, and run on fold 0's fitness split from the raw inputs. The file is moved into
    place only when those predictions reproduce the search's; export.json is written beside it. Then the
    other formats asked for are converted from it, and every file is reloaded in a fresh process by its own
    runtime and run on the same samples and the fold's OoD samples (workers.export._deploy). Results on
    object storage are read there, and the export is written in a local temporary folder and uploaded to
    their exports/NAME/, export.json last (its `model` is then the object's URI).

    Args:
        results_dir: the experiment's results directory: a local path, or an s3:// or gs:// URI.
        mask: the hex of the mask to export (instead of a pick rule).
        rule: `best-accuracy`, `knee` or `smallest` (with `min_accuracy`).
        min_accuracy: the accuracy floor of `smallest`.
        run: the run whose front to pick from; -1 (default) the aggregated front of all runs.
        kind: `population` (the paper's front, default) or `archive`.
        out: the local `.keras` file to write (default results_dir/exports/NAME/model.keras).
        feature_set: the experiment's features, if already loaded (else loaded from the feature cache).
        log: called with a line per stage.
        formats: keras, saved_model, tflite, onnx (a list or comma-separated; keras is always written).
        quantize: post-training quantisation of the TFLite file: float16 or int8 (calibrated on training
            samples).

    Returns:
        The report written to export.json.

    Raises:
        ExportError: bad input (unknown run, malformed mask, no qualifying member, unreadable results, an
            `out` on object storage, an unknown format, a quantisation without TFLite, a format whose
            packages are missing).
        ExportMismatchError: the reloaded model does not reproduce the recorded accuracy.

    """
    say = log or (lambda line: None)
    started = time.perf_counter()
    if (mask is None) == (rule is None):
        raise ExportError("give either a mask (--mask HEX) or a pick rule (--pick RULE), not both or neither")
    chosen_formats = checked_formats(formats, quantize)
    out_file = checked_out(out)
    location = results_location(results_dir)
    inputs, choice = choose(location, mask=mask, rule=rule, min_accuracy=min_accuracy, run=run, kind=kind)
    target = _target(location, out_file, choice)
    say(
        f"exporting {choice.rule}: accuracy {choice.row['accuracy']:.6g}, "
        f"active {choice.row['active_fraction']:.4g}, AUROC {choice.row['auroc']:.6g}"
    )
    try:
        if feature_set is None:
            say("loading the experiment's features (extracted again if the feature cache lost them)")
            feature_set = load_features(inputs, progress=log is not None)
        check_features(inputs, feature_set)
    except AnalysisError as error:  # bad input to an export as to an analysis: exit status 2, not 1
        raise ExportError(str(error)) from None
    with written_into(target.parent, say) as folder:
        say("re-training the head from its mask and building the model")
        try:
            measured = build_and_check(
                inputs.config,
                feature_set,
                choice.mask,
                choice.row,
                folder / target.name,
                EXPORTED_FOLD,
                say,
                chosen_formats,
                quantize,
            )
        except (DatasetError, OSError) as error:
            # the images are read again from the source: it may have moved since the features were cached
            raise ExportError(f"the experiment's dataset cannot be read: {error}") from None
        report: ExportReport = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "experiment": inputs.config.name,
            "results_dir": str(inputs.results_dir),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": str(target),
            "pick": choice.description,
            "mask": encode_mask(choice.mask),
            "mask_length": int(choice.mask.size),
            "active_bits": int(np.count_nonzero(choice.mask)),
            "objectives": recorded_objectives(choice.row),
            **measured,
            "seconds": round(time.perf_counter() - started, 3),
        }
        write_atomic(folder / REPORT_NAME, json.dumps(report, indent=2))
    return report


def results_location(results_dir: StoragePath | str) -> StoragePath:
    """The results directory as a local `Path` or an `ObjectPath` (an s3:// or gs:// URI).

    Args:
        results_dir: a path or URI.

    Returns:
        Where the results are.

    Raises:
        ExportError: an object-storage URI without a bucket, or one the store's settings cannot reach.

    """
    try:
        return storage_path(results_dir)
    except ValueError as error:
        raise ExportError(str(error)) from None


def checked_out(out: StoragePath | str | None) -> Path | None:
    """The `--out` file as a local path; one on object storage is refused.

    An export on object storage is uploaded to the results' exports/NAME/, whose objects it replaces
    whole (stale ones deleted); a folder named by `--out` may hold anything, so none is replaced that way.

    Args:
        out: the `--out` value, if given.

    Returns:
        The local file, or None.

    Raises:
        ExportError: `out` is an object-storage URI.

    """
    if out is None:
        return None
    if isinstance(out, ObjectPath) or is_object_uri(str(out)):
        raise ExportError(
            f"--out {out}: an export is written to object storage only into its results directory's "
            f"{EXPORTS_DIR}/ (leave --out out); --out takes a local {MODEL_SUFFIX} file"
        )
    return Path(out)


@contextmanager
def written_into(folder: StoragePath, say: Log) -> Iterator[Path]:
    """A local folder to write an export's files into, that becomes `folder`.

    A local `folder` is itself (the build moves its checked files in). On object storage, which has no
    rename, the files are written to a temporary local folder and uploaded to `folder` once the block
    ends without error, export.json last: the artifact list shows an export once its report exists, so
    a reader never meets a report whose model is missing. Nothing is uploaded when the block fails.

    Args:
        folder: the export's folder (results_dir/exports/NAME, or that of a local `--out` file).
        say: called with a line before the upload.

    Yields:
        The local folder to write into.

    """
    if not isinstance(folder, ObjectPath):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="evoprune-export-") as workspace:
        yield Path(workspace)
        say(f"uploading the export to {folder}")
        upload_folder(Path(workspace), folder, last=REPORT_NAME)


def checked_formats(formats: Sequence[str] | str | None, quantize: str | None) -> tuple[str, ...]:
    """The formats to write (keras always among them), refused before any work when they cannot be.

    Args:
        formats: as `export_model` takes them.
        quantize: None, "float16" or "int8".

    Returns:
        The formats, in the order they are written.

    Raises:
        ExportError: an unknown format or quantisation, a quantisation without tflite, or a format whose
            converter or runtime is not installed; `field` is formats or quantize.

    """
    try:
        chosen = parse_formats(formats)
        check_request(chosen, quantize)
    except FormatError as error:
        raise ExportError(str(error), field=error.field) from None
    return chosen


def choose(
    results_dir: StoragePath | str,
    *,
    mask: str | None = None,
    rule: str | None = None,
    min_accuracy: float | None = None,
    run: int = AGGREGATE_RUN,
    kind: str = DEFAULT_KIND,
) -> tuple[ResultsInput, Choice]:
    """Read a finished experiment's results and choose the member to export, without TensorFlow.

    Args:
        results_dir: the experiment's results directory: a local path, or an s3:// or gs:// URI.
        mask: the hex of the mask to export (instead of a pick rule).
        rule: `best-accuracy`, `knee` or `smallest` (with `min_accuracy`).
        min_accuracy: the accuracy floor of `smallest`.
        run: the run whose front to pick from; -1 the aggregated front.
        kind: `population` or `archive`.

    Returns:
        The results read and the choice.

    Raises:
        ExportError: unreadable results, a malformed or unknown mask, an unknown run or kind, no member
            that qualifies; `field` says which option.

    """
    if kind not in FRONT_KINDS:
        raise ExportError(
            f"unknown front kind {kind!r}; choose one of {', '.join(FRONT_KINDS)}", field="kind"
        )
    location = results_location(results_dir)
    try:
        inputs = read_results(location, front_kind=kind)
    except AnalysisError as error:
        # results written before fronts had kinds hold archive fronts only; picks read them for either kind
        try:
            inputs = read_results(location, front_kind="archive")
        except AnalysisError:
            raise ExportError(str(error)) from None
    if mask is not None:
        try:
            return inputs, given_mask(inputs, mask)
        except MaskError as error:
            raise ExportError(str(error), field="mask") from None
    try:
        rows = front_rows(inputs.front, run=run, kind=kind)
    except PickError as error:
        raise ExportError(str(error), field="kind" if "kind" in str(error) else "run") from None
    try:
        return inputs, _picked(inputs, rows, str(rule), min_accuracy, run, kind)
    except PickError as error:
        raise ExportError(str(error), field="min_accuracy" if rule == "smallest" else "pick") from None


def export_name(choice: Choice) -> str:
    """The folder under exports/ that an export of this choice goes to by default (a plain file name)."""
    return _target(Path(), None, choice).parent.name


def given_mask(inputs: ResultsInput, text: str, option: str = "--mask") -> Choice:
    """A mask given by its hex, with the full-protocol objectives recorded for it.

    Args:
        inputs: the results read.
        text: the mask's hex.
        option: the option that gave it, for messages.

    Returns:
        The choice (rule `mask`).

    Raises:
        ExportError: a mask of the wrong length, never evaluated, or screened out (`field` mask).
        MaskError: malformed hex.

    """
    length = inputs.mask_length
    digits = 2 * ((length + 7) // 8)
    text = text.strip().lower()
    if len(text) != digits:
        raise ExportError(
            f"{option} {text[:24]}{'…' if len(text) > 24 else ''} has {len(text)} hex digits; a mask of this "
            f"experiment has {length} bits, written as {digits} hex digits",
            field="mask",
        )
    bits = decode_mask(text, length)
    recorded = [row for row in inputs.evaluations if row["mask"] == text]
    if not recorded:
        raise ExportError(
            f"mask {text[:24]}… was never evaluated in {inputs.results_dir}, so there is no recorded "
            "accuracy to reproduce; export a mask from evaluations.parquet or front.parquet",
            field="mask",
        )
    full = [row for row in recorded if full_fidelity(row)]
    if not full:
        raise ExportError(
            f"mask {text[:24]}… was screened out after {recorded[0]['fidelity']:.0%} of the epochs "
            "(search.screening), so no full-protocol accuracy was recorded for an export to reproduce; "
            "export a mask of front.parquet or one with fidelity 1 in evaluations.parquet",
            field="mask",
        )
    # the evaluation's row as a front would hold it: its run, mask and objectives
    return Choice(bits, FrontRow.of(full[0]).record(), "mask", {"rule": "mask"})


def _picked(
    inputs: ResultsInput,
    rows: Sequence[FrontRow],
    rule: str,
    min_accuracy: float | None,
    run: int,
    kind: str,
) -> Choice:
    # with search.constraints, a pick prefers the feasible members (picks.feasible_first says why)
    candidates, constraints = feasible_first(rows)
    try:
        picked = pick(candidates, rule, min_accuracy=min_accuracy)
    except PickError as error:
        if constraints is None or constraints["picked_from"] != "feasible":
            raise
        raise PickError(
            f"{error} (among the {len(candidates)} members that keep to search.constraints)"
        ) from None
    kinds_recorded = has_kinds(inputs.every_front_rows)
    description: PickDescription = {
        "rule": rule,
        "run": run,
        # results written before fronts had kinds hold only the archive front
        "kind": kind if kinds_recorded else "archive",
        "front_size": len(rows),
    }
    if rule == "smallest":
        description["min_accuracy"] = min_accuracy
    if rule == "knee":
        description["method"] = KNEE_METHOD
    if constraints is not None:
        description["constraints"] = constraints
    return Choice(decode_mask(picked.mask, inputs.mask_length), picked.record(), rule, description)


def _target(results_dir: StoragePath, out: Path | None, choice: Choice) -> StoragePath:
    if out is None:
        name = choice.rule if choice.rule != "mask" else f"mask-{encode_mask(choice.mask)[:12]}"
        if choice.rule == "smallest":
            name += f"-{choice.description['min_accuracy']:g}"
        if choice.rule != "mask" and choice.description["run"] != AGGREGATE_RUN:
            name += f"-run{choice.description['run']}"
        return results_dir / EXPORTS_DIR / name / f"model{MODEL_SUFFIX}"
    out = Path(out)
    if out.suffix != MODEL_SUFFIX:
        raise ExportError(f"--out {out}: a Keras model file must end in {MODEL_SUFFIX}")
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give the path of the {MODEL_SUFFIX} file to write")
    return out
