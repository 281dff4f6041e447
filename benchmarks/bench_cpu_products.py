"""XLA:CPU's YNNPACK fusions on (as before) and off (evoprune's pin), side by side: speed and objectives.

Run: python -m evoprune.benchmarks.bench_cpu_products [--pairs 3] [--masks 12] [--epochs 20]
Each measurement is a fresh process (XLA_FLAGS is read once per process), alternating on, off, off, on, ...
so that a drift in the machine's load falls on both. Each process builds the same problems, compiles on
a warm-up call, then times `BatchedEvaluator.evaluate` on the same masks: the RPS-shaped problem (2048
features, 3 classes, 2520 training rows) and the demo's (64 digit features, 10 classes). The last line
printed is one JSON object: seconds per setting and problem (median, min, max), the off/on ratios of the
medians, and how many masks' objectives differ between the two settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import TypedDict

import numpy as np

from evoprune.workers.backend import YNN_FUSION_FLAG
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

# XLA's default fusion list in the pinned builds (tensorflow 2.21, jaxlib 0.10): products one by one.
YNN_ON = "individual_dot,individual_convolution"
SETTINGS = {"ynn_on": f"--{YNN_FUSION_FLAG}={YNN_ON}", "ynn_off": f"--{YNN_FUSION_FLAG}="}


class ProblemTiming(TypedDict):
    """One problem in one process: seconds of the timed call and each mask's [accuracy, AUROC, epochs]."""

    seconds: float
    objectives: list[list[float]]


class Spread(TypedDict):
    """Median, minimum and maximum seconds over one setting's processes."""

    median: float
    min: float
    max: float


class ProblemComparison(TypedDict):
    """One problem under both settings: seconds, off/on ratio of medians, masks whose objectives differ."""

    ynn_on: Spread
    ynn_off: Spread
    off_over_on: float
    masks_with_other_objectives: int


class CpuProductsSummary(TypedDict):
    """The JSON line of the comparison."""

    pairs: int
    masks: int
    epochs: int
    rps: ProblemComparison
    digits: ProblemComparison


def digits() -> FeatureSet:
    """The demo's problem: sklearn's 8x8 digits as 64 features in [0, 1]; OoD = the test images inverted."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    features = (data.data / 16.0).astype(np.float32)
    train_x, test_x, train_y, test_y = train_test_split(
        features, data.target.astype(np.int64), test_size=0.25, random_state=0, stratify=data.target
    )
    return FeatureSet("digits", 10, (Fold(Split(train_x, train_y), Split(test_x, test_y), 1.0 - test_x),))


def measure(masks: int, epochs: int) -> dict[str, ProblemTiming]:
    """In this process: seconds and objectives per problem (the flag comes from the environment)."""
    from evoprune.benchmarks.bench_evaluator import reference_masks, synthetic_rps
    from evoprune.shared.config import ExperimentConfig
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator

    config = ExperimentConfig.model_validate({"head": {"layers": [32]}, "training": {"max_epochs": epochs}})
    problems = {"rps": synthetic_rps(0), "digits": digits()}
    report: dict[str, ProblemTiming] = {}
    for name, features in problems.items():
        evaluator = BatchedEvaluator(features, config)
        chosen = reference_masks(masks, evaluator.mask_length, seed=1)
        evaluator.evaluate(chosen[:2])  # compiles
        started = time.perf_counter()
        results = evaluator.evaluate(chosen)
        seconds = time.perf_counter() - started
        report[name] = {
            "seconds": seconds,
            "objectives": [[r.accuracy, r.auroc, r.epochs] for r in results],
        }
    return report


def run_one(setting: str, masks: int, epochs: int) -> dict[str, ProblemTiming]:
    """`measure` in a fresh process under one setting of the fusions (XLA_FLAGS is read once per process)."""
    environment = {**os.environ, "XLA_FLAGS": SETTINGS[setting]}
    completed = subprocess.run(
        [sys.executable, "-m", "evoprune.benchmarks.bench_cpu_products", "--child", str(masks), str(epochs)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=3600,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, ProblemTiming] | CpuProductsSummary:
    """Compare the settings (or, as a child, measure one) and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--masks", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        report = measure(*arguments.child)
        print(json.dumps(report))
        return report
    pairs = [("ynn_on", "ynn_off"), ("ynn_off", "ynn_on")]
    order = [name for pair in range(arguments.pairs) for name in pairs[pair % 2]]
    runs: dict[str, list[dict[str, ProblemTiming]]] = {name: [] for name in SETTINGS}
    for setting in order:
        report = run_one(setting, arguments.masks, arguments.epochs)
        runs[setting].append(report)
        print(setting, {name: round(problem["seconds"], 2) for name, problem in report.items()}, flush=True)
    compared: dict[str, ProblemComparison] = {}
    for problem in runs["ynn_on"][0]:
        seconds = {name: [run[problem]["seconds"] for run in runs[name]] for name in SETTINGS}
        spreads: dict[str, Spread] = {
            name: {"median": statistics.median(values), "min": min(values), "max": max(values)}
            for name, values in seconds.items()
        }
        on, off = (np.asarray(runs[name][0][problem]["objectives"]) for name in ("ynn_on", "ynn_off"))
        compared[problem] = {
            "ynn_on": spreads["ynn_on"],
            "ynn_off": spreads["ynn_off"],
            "off_over_on": spreads["ynn_off"]["median"] / spreads["ynn_on"]["median"],
            "masks_with_other_objectives": int(np.sum(np.any(on != off, axis=1))),
        }
    summary: CpuProductsSummary = {
        "pairs": arguments.pairs,
        "masks": arguments.masks,
        "epochs": arguments.epochs,
        "rps": compared["rps"],
        "digits": compared["digits"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
