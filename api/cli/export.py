"""The `evoprune export DIR` sub-command: one front member as a deployable, smaller model, in any format."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

from evoprune.api.cli.commands import COMMANDS
from evoprune.coordinator.export import ExportReport
from evoprune.coordinator.export_ensemble import COMBINES, DEFAULT_COMBINE, EnsembleReport
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND, FRONT_KINDS
from evoprune.coordinator.results.picks import RULES
from evoprune.shared.storage import is_object_uri
from evoprune.workers.export.formats import EXTRA_HINT, FORMATS, QUANTIZATIONS, FormatEntry
from evoprune.workers.export.report import BatchKey, HeadLatencies

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add `export` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "export",
        help=COMMANDS["export"].help,
        description=(
            "Re-trains one front member from its mask (fitness is deterministic), writes it as a .keras "
            "model from raw inputs to class probabilities whose head keeps only the active inputs or units, "
            "loads the file back and checks that it reproduces the recorded accuracy, converts it to the "
            "other formats asked for, reloads every file in a fresh process with its own runtime (Keras, "
            "TensorFlow, the LiteRT interpreter, onnxruntime) and scores it on the fitness split and the OoD "
            "samples, and writes export.json beside them: files, sizes, accuracy and AUROC per format, "
            "parameters, head FLOPs and CPU latency before and after, objectives, the pick rule. Prints a "
            "summary and the report's path (--json: the report)."
        ),
    )
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="the experiment's results directory: a local path, or an s3:// or gs:// URI (the export is "
        "uploaded to DIR/exports/NAME/, export.json last)",
    )
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--mask", metavar="HEX", help="the mask to export, as in evaluations.parquet")
    chosen.add_argument(
        "--pick",
        choices=RULES,
        help="best-accuracy (ties: fewer active, then higher AUROC); knee (Das 1999, see export.json); "
        "smallest (fewest active with accuracy >= --min-accuracy)",
    )
    chosen.add_argument(
        "--ensemble",
        metavar="LOWER-UPPER",
        help="an ensemble of the aggregated front's members whose accuracy lies in this percentile window "
        "of the front's accuracies (as the analysis builds them, e.g. 85-95): one model, the backbone "
        "once, each member's pruned head, their outputs combined (--combine)",
    )
    chosen.add_argument(
        "--ensemble-masks",
        metavar="HEX,HEX,...",
        help="an ensemble of these evaluated masks, comma-separated (as --ensemble, members listed)",
    )
    parser.add_argument(
        "--combine",
        choices=COMBINES,
        help="how an ensemble combines its members: mean (default) averages their softmax probabilities "
        "(the analysis's softmax_accuracy); vote outputs each class's share of their votes, whose argmax "
        "is the majority vote (ties to the smallest class; the analysis's accuracy)",
    )
    parser.add_argument(
        "--min-accuracy", type=float, metavar="A", help="the accuracy floor of --pick smallest"
    )
    parser.add_argument(
        "--run", type=int, metavar="R", help="pick from run R's front (default -1: all runs together)"
    )
    parser.add_argument(
        "--kind",
        choices=FRONT_KINDS,
        help="the paper's front of the final populations (default) or the archive of all evaluations",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="the local .keras file (default: DIR/exports/RULE/model.keras); the other formats go beside it",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        metavar="FORMATS",
        help=f"{'|'.join(FORMATS)}, several comma-separated or repeated (default keras; the .keras file "
        "is always written, the others are converted from it). onnx needs "
        f"{EXTRA_HINT.removeprefix('pip install ')}",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="post-training quantisation of the TFLite file: float16 weights, or int8 throughout "
        "(calibrated on training samples); export.json records the size and the accuracy and AUROC change",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report (export.json) instead")
    parser.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    """`evoprune export`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status: 0; 2 for bad input (nothing is written); 1 when the written model does not
        reproduce the recorded accuracy (nothing is left behind either).

    """
    from evoprune.coordinator.analysis.inputs import ResultsUnreadableError
    from evoprune.coordinator.export import ExportError, export_model
    from evoprune.coordinator.export_ensemble import export_ensemble
    from evoprune.workers.export.build import ExportMismatchError

    ensemble = args.ensemble is not None or args.ensemble_masks is not None
    if args.combine is not None and not ensemble:
        return _error("--combine applies only to --ensemble and --ensemble-masks", EXIT_BAD_INPUT)
    if ensemble and args.run is not None:
        return _error(
            "--run does not apply to an ensemble: its window is taken from the aggregated front of all "
            "runs, as the analysis's are",
            EXIT_BAD_INPUT,
        )
    if args.ensemble_masks is not None and args.kind is not None:
        return _error(
            "--kind chooses the front of a window; it does not apply to --ensemble-masks", EXIT_BAD_INPUT
        )
    if args.min_accuracy is not None and args.pick != "smallest":
        return _error("--min-accuracy applies only to --pick smallest", EXIT_BAD_INPUT)
    if args.pick == "smallest" and args.min_accuracy is None:
        return _error("--pick smallest needs --min-accuracy A", EXIT_BAD_INPUT)
    if args.mask is not None and (args.run is not None or args.kind is not None):
        return _error(
            "--run and --kind choose the front to pick from; they do not apply to --mask", EXIT_BAD_INPUT
        )

    def log(line: str) -> None:
        print(f"evoprune export: {line}", file=sys.stderr)

    try:
        if ensemble:
            written = export_ensemble(
                args.directory,
                window=args.ensemble,
                masks=args.ensemble_masks,
                combine=args.combine or DEFAULT_COMBINE,
                kind=args.kind or DEFAULT_KIND,
                out=args.out or None,
                log=log,
                formats=args.formats,
                quantize=args.quantize,
            )
            shown = json.dumps(written, indent=2) if args.json else ensemble_summary_lines(written)
        else:
            report = export_model(
                args.directory,
                mask=args.mask,
                rule=args.pick,
                min_accuracy=args.min_accuracy,
                run=AGGREGATE_RUN if args.run is None else args.run,
                kind=args.kind or DEFAULT_KIND,
                out=args.out or None,
                log=log,
                formats=args.formats,
                quantize=args.quantize,
            )
            shown = json.dumps(report, indent=2) if args.json else summary_lines(report)
    except (ExportError, ResultsUnreadableError) as error:
        return _error(str(error), EXIT_BAD_INPUT)
    except ExportMismatchError as error:
        return _error(str(error), EXIT_FAILED)
    print(shown)
    return 0


def summary_lines(report: ExportReport) -> str:
    """A short account of an export: the files with their sizes and scores, the savings, the report's path."""
    head = report["head"]
    check = report["check"]
    latency = head["cpu_latency_ms"]
    method = latency["method"]
    folder = model_folder(report["model"])
    objectives = report["objectives"]
    lines = [
        f"evoprune export: wrote {folder}/ ({report['pick']['rule']}: recorded accuracy "
        f"{objectives['accuracy']:.6g}, active {objectives['active_fraction']:.4g}, AUROC "
        f"{objectives['auroc']:.6g})",
        f"  accuracy on fold {report['fold']['exported']}'s {check['split']} split, {check['samples']} "
        f"samples; each file reloaded in a fresh process:",
    ]
    entries = report.get("formats", {})
    width = max((len(entry["file"]) for entry in entries.values()), default=0)
    for entry in entries.values():
        lines.append(f"    {entry['file']:<{width}}  {_size(entry['bytes']):>9}  {_scores(entry)}")
    if report.get("float_tflite_bytes"):
        lines.append(f"    (the unquantised TFLite file would be {_size(report['float_tflite_bytes'])})")
    lines += [
        f"  model parameters {report['model_parameters']['before']:,} -> "
        f"{report['model_parameters']['after']:,}; head parameters {head['parameters']['before']:,} -> "
        f"{head['parameters']['after']:,}, FLOPs/image {head['flops']['before']:,} -> "
        f"{head['flops']['after']:,}",
        f"  head CPU latency per image, median [quartiles] of {method['repetitions']} repetitions: "
        f"{_latency(latency, 'single_ms')} ms one at a time, "
        f"{_latency(latency, 'batched_ms')} ms in batches of {method['batch_size']['batched_ms']}",
        f"  report: {folder}/export.json",
    ]
    return "\n".join(lines)


def model_folder(model: str) -> str:
    """The folder of export.json's `model`: a local path, or an object's URI (which `Path` would mangle)."""
    if is_object_uri(model):
        return model.rsplit("/", 1)[0]
    return str(Path(model).parent)


def ensemble_summary_lines(report: EnsembleReport) -> str:
    """A short account of an ensemble export: members, files with sizes and scores, the report's path."""
    pick = report["pick"]
    check = report["check"]
    folder = model_folder(report["model"])
    chosen = (
        f"window {pick['window'][0]}-{pick['window'][1]} of the aggregated {pick['kind']} front"
        if pick["members_from"] == "window"
        else "listed masks"
    )
    lines = [
        f"evoprune export: wrote {folder}/ (an ensemble of {len(report['members'])} members, "
        f"{chosen}, combined by {pick['combine']})",
        "  member accuracies: "
        + ", ".join(f"{member['objectives']['accuracy']:.4g}" for member in report["members"]),
        f"  ensemble accuracy on fold {report['fold']['exported']}'s {check['split']} split, "
        f"{check['samples']} samples; each file reloaded in a fresh process:",
    ]
    entries = report.get("formats", {})
    width = max((len(entry["file"]) for entry in entries.values()), default=0)
    for entry in entries.values():
        lines.append(f"    {entry['file']:<{width}}  {_size(entry['bytes']):>9}  {_scores(entry)}")
    analysis = report.get("analysis")
    if analysis is not None:
        outcome = {True: "reproduced exactly", False: "NOT reproduced", None: "a mean over folds"}
        lines.append(
            f"  the analysis's {analysis['column']} for these members: {analysis['accuracy']:.6g} "
            f"({outcome[analysis.get('reproduced')]})"
        )
    head = report["head"]
    lines += [
        f"  model parameters {report['model_parameters']:,}; heads' parameters "
        f"{head['parameters']['before']:,} unpruned -> {head['parameters']['after']:,}",
        f"  report: {folder}/export.json",
    ]
    return "\n".join(lines)


def _scores(entry: FormatEntry) -> str:
    accuracy = f"accuracy {entry['retrained_accuracy']:.6g} -> {entry['accuracy']:.6g}"
    if entry["exact"]:
        accuracy += " (exact)"
    elif entry["disagreements"]:
        accuracy += f" ({entry['disagreements']} predictions differ)"
    if entry.get("auroc") is None:
        auroc = "AUROC not measured"
    else:
        auroc = f"AUROC {entry['retrained_auroc']:.6g} -> {entry['auroc']:.6g}"
    if entry.get("auroc_note") and entry.get("auroc") is not None:
        auroc += " (saturated probabilities: see export.json)"
    quantized = f"  [{entry['quantization']}]" if entry.get("quantization") else ""
    return f"{accuracy}, {auroc}{quantized}"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


def _latency(latency: HeadLatencies, key: BatchKey) -> str:
    def one(name: Literal["before", "after"]) -> str:
        first, third = latency["spread"][name][key]
        return f"{latency[name][key]:.3g} [{first:.3g}, {third:.3g}]"

    return f"{one('before')} -> {one('after')}"


def _error(message: str, status: int) -> int:
    print(textwrap.fill("evoprune: error: " + " ".join(message.split()), width=110), file=sys.stderr)
    return status
