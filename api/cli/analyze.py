"""The `evoprune analyze DIR` sub-command: every analysis of a finished experiment into DIR/analysis/."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any

from evoprune.api.cli._arg_types import positive_int
from evoprune.api.cli.commands import COMMANDS

EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add `analyze` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "analyze",
        help=COMMANDS["analyze"].help,
        description=(
            "Writes DIR/analysis/: the aggregated ('super Pareto') front plots, the most important neurons "
            "with Grad-CAM heatmaps, and majority-vote ensembles of the front, with analysis.json listing "
            "every file. The front's models are re-trained from their masks (fitness is deterministic). "
            "The fronts are the paper's (each run's final population's non-dominated members) unless "
            "--front archive selects the non-dominated sets of all evaluations."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the experiment's results directory")
    parser.add_argument("--top", type=positive_int, default=10, metavar="K", help="neurons to report (10)")
    parser.add_argument(
        "--samples", type=positive_int, default=4, metavar="N", help="sample images in the heatmap grid (4)"
    )
    parser.add_argument(
        "--front",
        choices=("population", "archive"),
        default="population",
        help="the fronts to analyse: population (the paper's, default) or archive (all evaluations)",
    )
    parser.set_defaults(handler=analyze_command)


def analyze_command(args: argparse.Namespace) -> int:
    """`evoprune analyze`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status: 0, or 2 when DIR cannot be analysed (nothing is written then).

    """
    # TensorFlow's C++ start-up chatter would bury the stage lines
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from evoprune.coordinator.analysis.analyze import analyze
    from evoprune.coordinator.analysis.inputs import AnalysisError, ResultsUnreadableError
    from evoprune.coordinator.results.layout import ANALYSIS_DIR

    try:
        index = analyze(
            args.directory,
            top=args.top,
            samples=args.samples,
            front=args.front,
            log=lambda line: print(f"evoprune analyze: {line}", file=sys.stderr),
        )
    except (AnalysisError, ResultsUnreadableError) as error:
        message = "evoprune: error: " + " ".join(str(error).split())
        print(textwrap.fill(message, width=110), file=sys.stderr)
        return EXIT_BAD_INPUT
    reproduced = index["reproduced"]
    print(
        f"evoprune analyze: {len(index['artifacts'])} files; re-trained front reproduced "
        f"{reproduced['exact']}/{reproduced['models']} recorded objectives exactly",
        file=sys.stderr,
    )
    print(os.path.join(args.directory, ANALYSIS_DIR))
    return 0
