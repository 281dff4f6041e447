"""The `evoprune export DIR` sub-command: one front member as a deployable, physically smaller Keras model."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from evoprune.api.cli.commands import COMMANDS
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND, FRONT_KINDS
from evoprune.coordinator.results.picks import RULES

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
            "loads the file back and checks that it reproduces the recorded accuracy, and writes export.json "
            "beside it: parameters, head FLOPs and CPU latency before and after, objectives, the pick rule."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the experiment's results directory")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--mask", metavar="HEX", help="the mask to export, as in evaluations.parquet")
    chosen.add_argument(
        "--pick",
        choices=RULES,
        help="best-accuracy (ties: fewer active, then higher AUROC); knee (Das 1999, see export.json); "
        "smallest (fewest active with accuracy >= --min-accuracy)",
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
        "--out", metavar="FILE", help="the .keras file (default: DIR/exports/RULE/model.keras)"
    )
    parser.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    """`evoprune export`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status: 0; 2 for bad input (nothing is written); 1 when the written model does not
        reproduce the recorded accuracy (nothing is left behind either).

    """
    # TensorFlow's C++ start-up chatter would bury the stage lines
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from evoprune.coordinator.export import ExportError, export_model
    from evoprune.workers.export.build import ExportMismatchError

    if args.min_accuracy is not None and args.pick != "smallest":
        return _error("--min-accuracy applies only to --pick smallest", EXIT_BAD_INPUT)
    if args.pick == "smallest" and args.min_accuracy is None:
        return _error("--pick smallest needs --min-accuracy A", EXIT_BAD_INPUT)
    if args.mask is not None and (args.run is not None or args.kind is not None):
        return _error(
            "--run and --kind choose the front to pick from; they do not apply to --mask", EXIT_BAD_INPUT
        )
    try:
        report = export_model(
            Path(args.directory),
            mask=args.mask,
            rule=args.pick,
            min_accuracy=args.min_accuracy,
            run=AGGREGATE_RUN if args.run is None else args.run,
            kind=args.kind or DEFAULT_KIND,
            out=Path(args.out) if args.out else None,
            log=lambda line: print(f"evoprune export: {line}", file=sys.stderr),
        )
    except ExportError as error:
        return _error(str(error), EXIT_BAD_INPUT)
    except ExportMismatchError as error:
        return _error(str(error), EXIT_FAILED)
    print(summary_lines(report), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


def summary_lines(report: dict[str, Any]) -> str:
    """A few human lines about an export: the file, the check, the savings."""
    head = report["head"]
    check = report["check"]
    latency = head["cpu_latency_ms"]
    method = latency["method"]
    return "\n".join(
        [
            f"evoprune export: wrote {report['model']}",
            f"  accuracy {check['exported_accuracy']:.6g} on fold {report['fold']['exported']}'s "
            f"{check['split']} split ({'exact' if check['exact'] else 'to float error'}; recorded "
            f"{check['recorded_accuracy']:.6g})",
            f"  head parameters {head['parameters']['before']:,} -> {head['parameters']['after']:,}, "
            f"FLOPs/image {head['flops']['before']:,} -> {head['flops']['after']:,}",
            f"  head CPU latency per image, median [quartiles] of {method['repetitions']} repetitions: "
            f"{_latency(latency, 'single_ms')} ms one at a time, "
            f"{_latency(latency, 'batched_ms')} ms in batches of {method['batch_size']['batched_ms']}",
        ]
    )


def _latency(latency: dict[str, Any], key: str) -> str:
    def one(name: str) -> str:
        first, third = latency["spread"][name][key]
        return f"{latency[name][key]:.3g} [{first:.3g}, {third:.3g}]"

    return f"{one('before')} -> {one('after')}"


def _error(message: str, status: int) -> int:
    print(textwrap.fill("evoprune: error: " + " ".join(message.split()), width=110), file=sys.stderr)
    return status
