"""One steady-state round's training, timed per step: fused epochs against one compiled call per epoch.

A steady round of the paper's experiment is 20 masks (10 runs × 2 offspring) trained for up to 600 epochs;
it is bound by per-step latency, not arithmetic. This times the same masks both ways after a compiling
call and reports microseconds per training step, the figure the GPU floor of BENCHMARKS.md is built from.

Run: python -m evoprune.benchmarks.bench_round [--masks 20] [--epochs 100] [--label TEXT]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TypedDict

from evoprune.benchmarks.bench_evaluator import FEATURES, TRAIN_SAMPLES, reference_masks, synthetic_rps
from evoprune.shared.config import ExperimentConfig


class PathTiming(TypedDict):
    """One path's warm round: seconds, microseconds per step, groups and achieved TFLOP/s."""

    seconds: float
    us_per_step: float
    groups: int
    tflops: float


class RoundTiming(TypedDict):
    """The round both ways (`fused_*`: all epochs in one call; `per_epoch_*`: one call per epoch)."""

    masks: int
    epochs: int
    steps: int
    fused_s: float
    fused_us_per_step: float
    fused_groups: int
    fused_tflops: float
    per_epoch_s: float
    per_epoch_us_per_step: float
    per_epoch_groups: int
    per_epoch_tflops: float
    fused_speedup: float
    fused_identical: bool
    backend: str
    device: str


def time_round(masks: int, epochs: int) -> RoundTiming:
    """Warm timings of one round both ways.

    Args:
        masks: masks in the round.
        epochs: epochs each (early stopping off, so both paths run all of them).

    Returns:
        Seconds and microseconds per step of each path, and whether their objectives are identical.
    """
    from evoprune.workers.backend import backend_name, device_description
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator

    features = synthetic_rps(0)
    config = ExperimentConfig.model_validate(
        {"training": {"max_epochs": epochs, "early_stopping": {"enabled": False}}}
    )
    round_masks = reference_masks(masks, FEATURES, seed=1)
    steps = epochs * -(-TRAIN_SAMPLES // config.training.batch_size)
    objectives = {}
    timings: dict[str, PathTiming] = {}
    for name, per_call in (("fused", None), ("per_epoch", 1)):
        evaluator = BatchedEvaluator(features, config, epochs_per_call=per_call)
        evaluator.evaluate(round_masks)  # compiles
        started = time.perf_counter()
        results = evaluator.evaluate(round_masks)
        seconds = time.perf_counter() - started
        objectives[name] = [(r.accuracy, r.auroc, r.epochs) for r in results]
        timings[name] = {
            "seconds": round(seconds, 3),
            # groups run one after another, so a step of the round costs the sum over groups
            "us_per_step": round(1e6 * seconds / steps, 1),
            "groups": evaluator.last_flops.groups,
            "tflops": round(evaluator.last_flops.executed / seconds / 1e12, 4),
        }
    fused, per_epoch = timings["fused"], timings["per_epoch"]
    return {
        "masks": masks,
        "epochs": epochs,
        "steps": steps,
        "fused_s": fused["seconds"],
        "fused_us_per_step": fused["us_per_step"],
        "fused_groups": fused["groups"],
        "fused_tflops": fused["tflops"],
        "per_epoch_s": per_epoch["seconds"],
        "per_epoch_us_per_step": per_epoch["us_per_step"],
        "per_epoch_groups": per_epoch["groups"],
        "per_epoch_tflops": per_epoch["tflops"],
        "fused_speedup": round(per_epoch["seconds"] / fused["seconds"], 3),
        "fused_identical": objectives["fused"] == objectives["per_epoch"],
        "backend": backend_name(),
        "device": device_description(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--masks", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--label", default="", help="copied into the record (e.g. the XLA flags in use)")
    args = parser.parse_args(argv)
    record = {"label": args.label, **time_round(args.masks, args.epochs)}
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
