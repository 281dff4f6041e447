"""The reference experiment at full size: N steady-state NSGA-II runs × 200 evaluations on RPS-size features.

All runs share one in-process batched evaluator, so each step trains the offspring of every run together
(10 runs → 20 masks per call). Meant for an accelerator under `KERAS_BACKEND=jax`; on a CPU use
`--max-epochs` and `--runs` to shrink it. `--time-limit-s` stops the search cleanly (results so far kept)
and the record then says how far it got, so a capped run still yields a throughput.

Run: KERAS_BACKEND=jax python -m evoprune.benchmarks.bench_gpu_search [--runs 10] [--max-evaluations 200]
     [--max-epochs 600] [--time-limit-s 300] [--out DIR]
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
from pathlib import Path
from typing import Any

from evoprune.benchmarks.bench_evaluator import CLASSES, FEATURES, TEST_SAMPLES, TRAIN_SAMPLES, synthetic_rps
from evoprune.coordinator.evaluator import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.events import EvaluationFinished, Event, EventBus

GPU_SAMPLE_PERIOD_MS = 500


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

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"gpu_utilisation_mean_pct": None, "gpu_memory_peak_mib": None}
        utilisation = [sample[0] for sample in self.samples]
        return {
            "gpu_utilisation_mean_pct": round(sum(utilisation) / len(utilisation), 1),
            "gpu_memory_peak_mib": max(sample[1] for sample in self.samples),
        }


def benchmark_config(runs: int, max_evaluations: int, max_epochs: int) -> ExperimentConfig:
    """The paper's protocol and steady-state search (population 30, 2 offspring per step), N runs."""
    return ExperimentConfig.model_validate(
        {
            "name": "rps-size-search",
            "training": {"max_epochs": max_epochs},
            "search": {"runs": runs, "max_evaluations": max_evaluations, "seed": 0},
        }
    )


def run(config: ExperimentConfig, out_dir: Path, time_limit_s: float | None, log: Any = print) -> dict:
    """Run the experiment and time it.

    Args:
        config: from `benchmark_config`.
        out_dir: the results directory to write.
        time_limit_s: stop (cleanly) after this long; None runs to the end.
        log: where progress lines go.

    Returns:
        The benchmark record.

    """
    from evoprune.workers.backend import backend_name, device_description
    from evoprune.workers.evaluator import BatchedEvaluator

    features = synthetic_rps(0)
    evaluator = InProcessEvaluator(BatchedEvaluator(features, config))
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
    experiment = Experiment(config, out_dir, features.key, FEATURES, evaluator, bus)
    experiment.start()
    deadline = None if time_limit_s is None else started + time_limit_s
    with GpuSampler() as sampler:
        summary = experiment.run(should_stop=lambda: deadline is not None and time.perf_counter() > deadline)
    wall_s = time.perf_counter() - started
    evaluations = int(summary["aggregate"]["evaluations"])
    return {
        "features": f"{TRAIN_SAMPLES}x{FEATURES} train, {TEST_SAMPLES} test, {CLASSES} classes (synthetic)",
        "runs": config.search.runs,
        "evaluations_per_run": config.search.max_evaluations,
        "max_epochs": config.training.max_epochs,
        "status": summary["status"],
        "evaluations_done": evaluations,
        "evaluations_total": total,
        "trained": int(summary["aggregate"]["trained"]),
        "wall_s": round(wall_s, 1),
        "evaluations_per_s": round(evaluations / wall_s, 3),
        "projected_full_s": round(wall_s * total / max(evaluations, 1), 1),
        "aggregate_hypervolume_archive": summary["aggregate"]["hypervolume_archive"],
        "best_accuracy": summary["aggregate"]["best_accuracy"],
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
    parser.add_argument("--time-limit-s", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the results directory here")
    args = parser.parse_args(argv)
    config = benchmark_config(args.runs, args.max_evaluations, args.max_epochs)
    with tempfile.TemporaryDirectory() as scratch:
        record = run(config, args.out or Path(scratch) / "results", args.time_limit_s, log=_stderr)
    print(json.dumps(record), flush=True)
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
