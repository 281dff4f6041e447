"""`evoprune bench`: the evaluator benchmark, reference-style against batched, in one process."""

from __future__ import annotations

import argparse

from evoprune.api.cli._arg_types import positive_int
from evoprune.api.cli.commands import COMMANDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `bench` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help=COMMANDS["bench"].help,
        description="Trains the same masks for the same fixed number of epochs with one model.fit per mask "
        "(the reference) and with the batched evaluator, on RPS-sized synthetic features; also the batched "
        "evaluator's fused path against its one-call-per-epoch path. The last line "
        "printed is one JSON object. The backend follows KERAS_BACKEND (tensorflow by default).",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run: under a minute on 2 CPU cores")
    parser.add_argument("--masks", type=positive_int, default=None, help="masks to evaluate")
    parser.add_argument("--epochs", type=positive_int, default=None, help="fixed epochs per mask")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's FP32 peak in TFLOP/s, to report achieved/peak (e.g. 67 for an H200: NVIDIA's "
        "datasheet figure for FP32 without tensor cores)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from evoprune.benchmarks.bench_evaluator import main

    return main(quick=args.quick, masks=args.masks, epochs=args.epochs, peak_tflops=args.peak_tflops)
