"""The reference experiment at full size: N steady-state NSGA-II runs × 200 evaluations on RPS-size features.

All runs share one in-process batched evaluator, so each step trains the offspring of every run together
(10 runs → 20 masks per call). Meant for an accelerator under `KERAS_BACKEND=jax`; on a CPU use
`--max-epochs` and `--runs` to shrink it. `--time-limit-s` stops the search cleanly (results so far kept)
and the record then says how far it got, so a capped run still yields a throughput. `--steady-rounds N`
is the bounded variant: the first round (every run's initial population in one call) and N steady-state
rounds are measured, and the whole experiment is projected from them next to the measured part.

Run: KERAS_BACKEND=jax python -m evoprune.benchmarks.bench_gpu_search [--runs 10] [--max-evaluations 200]
     [--max-epochs 600] [--steady-rounds N] [--time-limit-s 300] [--peak-tflops 67] [--out DIR]
Tiny, on a CPU: KERAS_BACKEND=jax python -m evoprune.benchmarks.bench_gpu_search --runs 2
     --max-evaluations 8 --population 4 --max-epochs 3 --steady-rounds 1 --features 256
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from evoprune.benchmarks.bench_evaluator import CLASSES, FEATURES, TEST_SAMPLES, TRAIN_SAMPLES, synthetic_rps
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.events import EvaluationFinished, Event, EventBus
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

GPU_SAMPLE_PERIOD_MS = 500


class GpuUse(TypedDict):
    """The GPU's mean utilisation and peak memory while sampled (None: nothing sampled, no GPU)."""

    gpu_utilisation_mean_pct: float | None
    gpu_memory_peak_mib: float | None


class Projection(TypedDict, total=False):
    """The first and steady rounds as measured, and the experiment projected from them (empty: no calls)."""

    first_round_masks: int
    first_round_s: float
    first_round_groups: int
    first_round_tflops: float
    first_round_over_peak: float | None
    steady_rounds_measured: int
    steady_rounds_total: int
    steady_round_s: float  # with steady rounds measured only, as the two below
    steady_round_masks: float
    projected_from_rounds_s: float


class GpuSearchRecord(Projection, GpuUse):
    """The benchmark record: the run, its projection and the GPU's use."""

    features: str
    runs: int
    evaluations_per_run: int
    max_epochs: int
    status: str
    evaluations_done: int
    evaluations_total: int
    trained: int
    wall_s: float
    evaluations_per_s: float
    projected_full_s: float
    epochs_per_call: int | None
    calls: int
    aggregate_hypervolume_archive: float
    best_accuracy: float | None
    backend: str
    device: str


class GpuSampler:
    """Samples GPU utilisation and memory with nvidia-smi in the background (nothing when it is absent)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") is None:
            return self
        self._process = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                str(GPU_SAMPLE_PERIOD_MS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                utilisation, memory = (float(part) for part in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((utilisation, memory))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def summary(self) -> GpuUse:
        if not self.samples:
            return {"gpu_utilisation_mean_pct": None, "gpu_memory_peak_mib": None}
        utilisation = [sample[0] for sample in self.samples]
        return {
            "gpu_utilisation_mean_pct": round(sum(utilisation) / len(utilisation), 1),
            "gpu_memory_peak_mib": max(sample[1] for sample in self.samples),
        }


def benchmark_config(
    runs: int,
    max_evaluations: int,
    max_epochs: int,
    population: int = 30,
    epochs_per_call: int | None = None,
) -> ExperimentConfig:
    """The paper's protocol and steady-state search (population 30, 2 offspring per step), N runs."""
    return ExperimentConfig.model_validate(
        {
            "name": "rps-size-search",
            "training": {"max_epochs": max_epochs, "epochs_per_call": epochs_per_call},
            "search": {
                "runs": runs,
                "max_evaluations": max_evaluations,
                "population_size": population,
                "seed": 0,
            },
        }
    )


@dataclass
class TimedCalls:
    """Wraps the batched evaluator and records every call: masks, seconds, executed FLOPs, groups."""

    evaluator: Any
    calls: list[dict[str, float]] = field(default_factory=list)

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        started = time.perf_counter()
        results = self.evaluator.evaluate(masks, screening)
        flops = self.evaluator.last_flops
        self.calls.append(
            {
                "masks": len(masks),
                "seconds": time.perf_counter() - started,
                "executed_flops": flops.executed,
                "groups": flops.groups,
            }
        )
        return results


def features_of_width(width: int) -> FeatureSet:
    """The benchmark's RPS-size features, or their first `width` columns (tiny CPU runs)."""
    features = synthetic_rps(0)
    if width >= FEATURES:
        return features
    fold = features.folds[0]
    return FeatureSet(
        f"{features.key}-{width}",
        CLASSES,
        (
            Fold(
                Split(fold.train.features[:, :width].copy(), fold.train.labels),
                Split(fold.evaluation.features[:, :width].copy(), fold.evaluation.labels),
                fold.ood[:, :width].copy(),
            ),
        ),
    )


def projection(
    config: ExperimentConfig, calls: list[dict[str, float]], peak_tflops: float | None
) -> Projection:
    """The measured first and steady rounds, and the whole experiment projected from them.

    Args:
        config: the experiment.
        calls: `TimedCalls.calls`; the first is every run's initial population.
        peak_tflops: the device's FP32 peak (None: no ratio).

    Returns:
        First-round time and throughput, mean steady-round time, and the projected total.
    """
    if not calls:
        return {}
    search = config.search
    first, steady = calls[0], calls[1:]
    rounds_total = -(-(search.max_evaluations - search.population_size) // search.offspring_per_step)
    first_tflops = first["executed_flops"] / first["seconds"] / 1e12
    record: Projection = {
        "first_round_masks": int(first["masks"]),
        "first_round_s": round(first["seconds"], 2),
        "first_round_groups": int(first["groups"]),
        "first_round_tflops": round(first_tflops, 4),
        "first_round_over_peak": round(first_tflops / peak_tflops, 4) if peak_tflops else None,
        "steady_rounds_measured": len(steady),
        "steady_rounds_total": rounds_total,
    }
    if steady:
        steady_s = float(np.mean([call["seconds"] for call in steady]))
        record["steady_round_s"] = round(steady_s, 3)
        record["steady_round_masks"] = round(float(np.mean([call["masks"] for call in steady])), 1)
        record["projected_from_rounds_s"] = round(first["seconds"] + rounds_total * steady_s, 1)
    return record


def run(
    config: ExperimentConfig,
    out_dir: Path,
    time_limit_s: float | None,
    log: Callable[[str], None] = print,
    steady_rounds: int | None = None,
    peak_tflops: float | None = None,
    feature_width: int = FEATURES,
) -> GpuSearchRecord:
    """Run the experiment and time it.

    Args:
        config: from `benchmark_config`.
        out_dir: the results directory to write.
        time_limit_s: stop (cleanly) after this long; None runs to the end.
        log: where progress lines go.
        steady_rounds: stop (cleanly) after the first round and this many steady rounds; None: no bound.
        peak_tflops: the device's FP32 peak, for achieved/peak ratios.
        feature_width: features per sample (FEATURES = RPS size; fewer for tiny CPU runs).

    Returns:
        The benchmark record.

    """
    from evoprune.workers.backend import backend_name, device_description
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator

    features = features_of_width(feature_width)
    timed = TimedCalls(BatchedEvaluator(features, config))
    evaluator = InProcessEvaluator(timed)
    bus = EventBus()
    started = time.perf_counter()
    done = {"evaluations": 0, "trained_seconds": 0.0}
    total = config.search.runs * config.search.max_evaluations

    def on_event(event: Event) -> None:
        if isinstance(event, EvaluationFinished):
            done["evaluations"] += 1
            if done["evaluations"] % 100 == 0:
                log(f"{done['evaluations']}/{total} evaluations after {time.perf_counter() - started:.1f} s")

    bus.subscribe(on_event)
    experiment = Experiment(config, out_dir, features.key, feature_width, evaluator, bus)
    experiment.start()
    deadline = None if time_limit_s is None else started + time_limit_s

    def should_stop() -> bool:
        if steady_rounds is not None and len(timed.calls) >= 1 + steady_rounds:
            return True
        return deadline is not None and time.perf_counter() > deadline

    with GpuSampler() as sampler:
        summary = experiment.run(should_stop=should_stop)
    wall_s = time.perf_counter() - started
    evaluations = int(summary.aggregate.evaluations)
    return {
        "features": f"{TRAIN_SAMPLES}x{feature_width} train, {TEST_SAMPLES} test, {CLASSES} classes",
        "runs": config.search.runs,
        "evaluations_per_run": config.search.max_evaluations,
        "max_epochs": config.training.max_epochs,
        "status": summary.status,
        "evaluations_done": evaluations,
        "evaluations_total": total,
        "trained": int(summary.aggregate.trained),
        "wall_s": round(wall_s, 1),
        "evaluations_per_s": round(evaluations / wall_s, 3),
        "projected_full_s": round(wall_s * total / max(evaluations, 1), 1),
        "epochs_per_call": timed.evaluator.epochs_per_call,
        "calls": len(timed.calls),
        **projection(config, timed.calls, peak_tflops),
        "aggregate_hypervolume_archive": summary.aggregate.hypervolume_archive,
        "best_accuracy": summary.aggregate.best_accuracy,
        "backend": backend_name(),
        "device": device_description(),
        **sampler.summary(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-evaluations", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=600)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--time-limit-s", type=float, default=None)
    parser.add_argument(
        "--steady-rounds", type=int, default=None, help="stop after the first round and this many more"
    )
    parser.add_argument("--epochs-per-call", type=int, default=None, help="None/0 = all epochs in one call")
    parser.add_argument("--peak-tflops", type=float, default=None, help="FP32 peak (H200: 67)")
    parser.add_argument("--features", type=int, default=FEATURES, help="features per sample (tiny runs)")
    parser.add_argument("--out", type=Path, default=None, help="keep the results directory here")
    args = parser.parse_args(argv)
    config = benchmark_config(
        args.runs, args.max_evaluations, args.max_epochs, args.population, args.epochs_per_call
    )
    with tempfile.TemporaryDirectory() as scratch:
        record = run(
            config,
            args.out or Path(scratch) / "results",
            args.time_limit_s,
            log=_stderr,
            steady_rounds=args.steady_rounds,
            peak_tflops=args.peak_tflops,
            feature_width=args.features,
        )
    print(json.dumps(record), flush=True)
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
