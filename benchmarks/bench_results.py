"""Results writing at 20,000 evaluations: the hand-written Pareto maths (before) against moocore's (after).

Run: python -m evoprune.benchmarks.bench_results [--runs 10] [--evaluations 2000] [--mask-length 2048]
The same `write_results` (evaluations.parquet, front.parquet with both kinds of front, summary.json, plots)
runs twice on the same synthetic rows, each time in a fresh process so that peak memory is its own: once
with shared.pareto's first-front test and hypervolume swapped for the implementations they replaced (a
table of every pair of points; a sweep over a 2-D staircase), once as shipped. The last line printed is
one JSON object with every number.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    from evoprune.coordinator.results.writer import EvaluationRecord

POPULATION = 30


# ---- the implementations moocore replaced, kept here as the baseline ---------------------------------


def legacy_pareto_mask(points: np.ndarray) -> np.ndarray:
    """The first front from an n × n table of pairwise dominance (what shared.pareto did before)."""
    array = np.asarray(points, dtype=np.float64)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    no_worse = np.all(array[:, None, :] <= array[None, :, :], axis=2)
    better = np.any(array[:, None, :] < array[None, :, :], axis=2)
    return np.asarray(~(no_worse & better).any(axis=0), dtype=bool)


def legacy_hypervolume(points: np.ndarray, reference: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> float:
    """Exact 3-D hypervolume by sweeping z over a 2-D staircase (what shared.pareto did before)."""
    array = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    bound = np.asarray(reference, dtype=np.float64)
    array = array[np.all(array < bound, axis=1)]
    if len(array) == 0:
        return 0.0
    array = array[np.argsort(array[:, 2], kind="stable")]
    xs: list[float] = []
    ys: list[float] = []
    area = 0.0
    z_values = [*array[:, 2].tolist(), float(bound[2])]
    volume = 0.0
    for index, (x, y) in enumerate(array[:, :2].tolist()):
        right_of_equal = bisect.bisect_right(xs, x)
        if not (right_of_equal > 0 and ys[right_of_equal - 1] <= y):
            left = bisect.bisect_left(xs, x)
            stop = left
            while stop < len(xs) and ys[stop] >= y:
                stop += 1
            cover = ys[left - 1] if left > 0 else float(bound[1])
            edges = [x, *xs[left:stop], xs[stop] if stop < len(xs) else float(bound[0])]
            heights = [cover, *ys[left:stop]]
            for position, height in enumerate(heights):
                area += (edges[position + 1] - edges[position]) * (height - y)
            xs[left:stop] = [x]
            ys[left:stop] = [y]
        volume += area * (z_values[index + 1] - z_values[index])
    return volume


# ---- the workload ----------------------------------------------------------------------------------


def synthetic_rows(runs: int, evaluations: int, mask_length: int, seed: int = 0) -> list[EvaluationRecord]:
    """Evaluation rows whose objectives trade off as real ones do (accuracy grows with the active share)."""
    rng = np.random.default_rng(seed)
    rows: list[EvaluationRecord] = []
    for run in range(runs):
        for index in range(evaluations):
            bits = rng.random(mask_length) < rng.random()
            active = float(bits.mean())
            rows.append(
                {
                    "run": run,
                    "step": index // 2,
                    "slot": index % 2,
                    "mask": np.packbits(bits).tobytes().hex(),
                    "mask_length": mask_length,
                    "accuracy": float(np.clip(0.55 + 0.4 * active**0.3 + rng.normal(0, 0.04), 0, 1)),
                    "active_fraction": active,
                    "auroc": float(np.clip(0.95 - 0.3 * active + rng.normal(0, 0.05), 0, 1)),
                    "cached": False,
                    "seconds": 1.0,
                    "worker": "w",
                }
            )
    return rows


class WritingMeasurement(TypedDict):
    """One variant's results writing: wall time, peak memory, and the aggregate it wrote."""

    variant: str
    seconds: float
    peak_rss_mb: float
    peak_added_mb: float
    hypervolume_archive: float
    front_size_archive: int
    hypervolume_population: float


class WritingComparison(TypedDict):
    """The JSON line: both variants on the same rows, and their ratios."""

    benchmark: str
    evaluations: int
    runs: int
    mask_length: int
    before: WritingMeasurement
    after: WritingMeasurement
    speedup: float
    memory_ratio: float
    same_hypervolume: bool
    machine: dict[str, int | str]  # cpus, python


def _measure(variant: str, runs: int, evaluations: int, mask_length: int, out: str) -> WritingMeasurement:
    """Write the results once in this (fresh) process and report wall time and peak memory."""
    # plots: matplotlib's import stays out of the timing
    from evoprune.coordinator.results import plots
    from evoprune.coordinator.results import writer as results
    from evoprune.coordinator.results.summary import RunInfo
    from evoprune.shared import config as config_module
    from evoprune.shared import pareto

    if variant == "before":
        results.pareto_mask = legacy_pareto_mask
        results.hypervolume = legacy_hypervolume
        pareto.hypervolume = legacy_hypervolume  # ParetoArchive's
    rows = synthetic_rows(runs, evaluations, mask_length)
    rng = np.random.default_rng(1)
    populations = {
        run: [
            rows[run * evaluations + int(i)]["mask"]
            for i in rng.choice(evaluations, POPULATION, replace=False)
        ]
        for run in range(runs)
    }
    config = config_module.parse_config(
        {
            "name": "bench",
            "search": {"runs": runs, "max_evaluations": evaluations, "population_size": POPULATION},
        }
    )
    results_dir = Path(out) / variant
    results_dir.mkdir(parents=True)
    assert plots.DPI  # imported for its side effect (matplotlib loaded) before the clock starts
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    # what an experiment would add about how it ran: nothing ran here, so nothing to report
    info = RunInfo(
        status="succeeded",
        wall_time_s=0.0,
        resumed_with_rows=0,
        feature_set="synthetic",
        protocol=config.protocol_fingerprint(),
        mask_length=mask_length,
        fingerprint="",
        evaluator={},
        fitness_cache="none",
    )
    summary = results.write_results(results_dir, config, rows, info, populations)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": variant,
        "seconds": round(seconds, 3),
        # ru_maxrss only grows: the rise during write_results is the peak it added on top of the inputs
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_added_mb": round((peak_kb - baseline_kb) / 1024, 1),
        "hypervolume_archive": summary.aggregate.hypervolume_archive,
        "front_size_archive": summary.aggregate.front_size_archive,
        "hypervolume_population": summary.aggregate.hypervolume_population,
    }


def main(argv: list[str] | None = None) -> WritingComparison:
    """Run both variants, print a table and the JSON line.

    Args:
        argv: command-line arguments (None: sys.argv).

    Returns:
        The result object printed on the last line.

    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=2000, help="per run")
    parser.add_argument("--mask-length", type=int, default=2048)
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    measured: dict[str, WritingMeasurement] = {}
    with tempfile.TemporaryDirectory() as out:
        for variant in ("before", "after"):
            with context.Pool(1) as pool:
                measured[variant] = pool.apply(
                    _measure, (variant, args.runs, args.evaluations, args.mask_length, out)
                )
    before, after = measured["before"], measured["after"]
    total = args.runs * args.evaluations
    print(
        f"results writing: {args.runs} runs × {args.evaluations} = {total} evaluations, "
        f"{args.mask_length}-bit masks"
    )
    print(f"{'':8} {'seconds':>9} {'peak RSS MB':>12} {'added MB':>9}  aggregated archive HV")
    for name, item in measured.items():
        print(
            f"{name:8} {item['seconds']:9.2f} {item['peak_rss_mb']:12.1f} {item['peak_added_mb']:9.1f}  "
            f"{item['hypervolume_archive']:.12f}"
        )
    result: WritingComparison = {
        "benchmark": "results_writing",
        "evaluations": total,
        "runs": args.runs,
        "mask_length": args.mask_length,
        "before": before,
        "after": after,
        "speedup": round(before["seconds"] / after["seconds"], 2),
        "memory_ratio": round(before["peak_added_mb"] / max(after["peak_added_mb"], 0.1), 2),
        "same_hypervolume": abs(before["hypervolume_archive"] - after["hypervolume_archive"]) < 1e-12,
        "machine": {"cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
    }
    print(f"speed-up {result['speedup']}×, added peak memory {result['memory_ratio']}× smaller")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
