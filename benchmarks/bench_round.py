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

from evoprune.benchmarks.bench_evaluator import FEATURES, TRAIN_SAMPLES, reference_masks, synthetic_rps
from evoprune.shared.config import ExperimentConfig


def time_round(masks: int, epochs: int) -> dict:
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
    record: dict = {"masks": masks, "epochs": epochs, "steps": steps}
    objectives = {}
    for name, per_call in (("fused", None), ("per_epoch", 1)):
        evaluator = BatchedEvaluator(features, config, epochs_per_call=per_call)
        evaluator.evaluate(round_masks)  # compiles
        started = time.perf_counter()
        results = evaluator.evaluate(round_masks)
        seconds = time.perf_counter() - started
        objectives[name] = [(r.accuracy, r.auroc, r.epochs) for r in results]
        record[f"{name}_s"] = round(seconds, 3)
        # groups run one after another, so a step of the round costs the sum over groups
        record[f"{name}_us_per_step"] = round(1e6 * seconds / steps, 1)
        record[f"{name}_groups"] = evaluator.last_flops.groups
        record[f"{name}_tflops"] = round(evaluator.last_flops.executed / seconds / 1e12, 4)
    record["fused_speedup"] = round(record["per_epoch_s"] / record["fused_s"], 3)
    record["fused_identical"] = objectives["fused"] == objectives["per_epoch"]
    record["backend"] = backend_name()
    record["device"] = device_description()
    return record


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
