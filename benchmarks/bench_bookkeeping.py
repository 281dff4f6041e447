"""NSGA-II bookkeeping, deap against jmetalpy (the reference's): hypervolume and population-front size.

Run: python -m evoprune.benchmarks.bench_bookkeeping [CONFIG] [--problem fake|config] [--seeds 10]
     [--max-evaluations 200] [--test-size 360]
`--problem fake` (the default) evaluates a cheap deterministic stand-in with the demo's mask length (64) in
microseconds per mask, its accuracy a multiple of 1/--test-size; `--problem config` trains for real on CONFIG
(default: the embedded demo). Both bookkeepings run the same seeds with the config's search settings. The
population front under jmetalpy is counted with and without its de-duplication by objective vector. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
from scipy.stats import wilcoxon

from evoprune.coordinator.evaluator_interface import InProcessEvaluator, MaskEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.writer import population_front, read_evaluations
from evoprune.shared.config import ExperimentConfig, demo_config_path, load_config
from evoprune.shared.masks import encode_mask
from evoprune.shared.objectives import Evaluation
from evoprune.shared.screening import ScreeningRequest

BOOKKEEPINGS = ("deap", "jmetalpy")


class BookkeepingRuns(TypedDict):
    """One bookkeeping's runs: hypervolumes, front sizes (also before de-duplication) and the wall time."""

    hypervolume_population: list[float]
    hypervolume_archive: list[float]
    front_size_population: list[int]
    front_size_keeping_equal_objectives: list[int]
    super_front_size: int
    seconds: float


class BookkeepingComparison(TypedDict):
    """The JSON line: both bookkeepings on the same seeds and the paired test of their hypervolumes."""

    config: str
    seeds: int
    evaluations_per_run: int
    deap: BookkeepingRuns
    jmetalpy: BookkeepingRuns
    mean_hypervolume_population: dict[str, float]  # bookkeeping → mean
    mean_hypervolume_archive: dict[str, float]
    jmetalpy_minus_deap_population_mean: float
    jmetalpy_wins: int
    wilcoxon_p: float
    duplicates_dropped_by_jmetalpy: int
    problem: NotRequired[str]  # set by `main`


class FakeProblem:
    """Masks → (accuracy, active_fraction, auroc) from fixed random weights, accuracy on a test-set grid.

    A few inputs carry most of the signal and some hurt, the demo's trade-off; accuracy is a multiple of
    1/`test_size`, as a real test set makes it, which is where equal objective vectors come from.
    """

    def __init__(self, length: int = 64, test_size: int = 360, seed: int = 1234) -> None:
        rng = np.random.default_rng(seed)
        self.length = length
        self.test_size = test_size
        self.accuracy_weights = rng.exponential(size=length) ** 3
        self.harm = rng.random(length) < 0.3
        self.auroc_weights = rng.exponential(size=length) ** 2

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        """Objectives per mask (screening is not modelled)."""
        results = []
        for mask in np.asarray(masks, dtype=bool):
            signal = float(self.accuracy_weights[mask & ~self.harm].sum() / self.accuracy_weights.sum())
            harm = float(np.count_nonzero(mask & self.harm)) / self.length
            accuracy = 0.1 + 0.85 * (1.0 - np.exp(-6.0 * signal)) - 0.3 * harm
            robust = float(self.auroc_weights[mask].sum() / self.auroc_weights.sum())
            auroc = round(float(0.5 + 0.45 * np.tanh(3.0 * robust) - 0.2 * harm), 6)
            results.append(
                Evaluation(
                    accuracy=round(accuracy * self.test_size) / self.test_size,
                    active_fraction=float(mask.mean()),
                    auroc=auroc,
                )
            )
        return results


def run_bookkeeping(
    config: ExperimentConfig,
    bookkeeping: str,
    backend: MaskEvaluator,
    feature_key: str,
    mask_length: int,
    out_dir: Path,
) -> BookkeepingRuns:
    """One experiment of `config.search.runs` seeded runs under one bookkeeping.

    Returns:
        Per-run hypervolumes, population-front sizes (and, for jmetalpy, the size before de-duplication) and
        the wall time.

    """
    search = config.search.model_copy(update={"bookkeeping": bookkeeping})
    experiment = Experiment(
        config.model_copy(update={"search": search}),
        out_dir / bookkeeping,
        feature_key,
        mask_length,
        InProcessEvaluator(backend),
    )
    started = time.perf_counter()
    experiment.start()
    summary = experiment.run()
    seconds = time.perf_counter() - started
    rows = read_evaluations(out_dir / bookkeeping)
    with_duplicates = []
    for run in range(search.runs):
        members = [encode_mask(mask) for mask in experiment._runs[run].search.population()[0]]
        with_duplicates.append(len(population_front([r for r in rows if r["run"] == run], members)))
    return {
        "hypervolume_population": [run.front.hypervolume_population for run in summary.runs],
        "hypervolume_archive": [run.front.hypervolume_archive for run in summary.runs],
        "front_size_population": [run.front.front_size_population for run in summary.runs],
        "front_size_keeping_equal_objectives": with_duplicates,
        "super_front_size": summary.aggregate.front_size_population,
        "seconds": round(seconds, 1),
    }


def compare(
    config: ExperimentConfig, backend: MaskEvaluator, feature_key: str, mask_length: int, out_dir: Path
) -> BookkeepingComparison:
    """Both bookkeepings on the same seeds, and the paired comparison of their population hypervolumes."""
    results = {
        name: run_bookkeeping(config, name, backend, feature_key, mask_length, out_dir)
        for name in BOOKKEEPINGS
    }
    deap, jmetalpy = (np.array(results[name]["hypervolume_population"]) for name in BOOKKEEPINGS)
    differences = jmetalpy - deap
    return {
        "config": config.name,
        "seeds": config.search.runs,
        "evaluations_per_run": config.search.max_evaluations,
        "deap": results["deap"],
        "jmetalpy": results["jmetalpy"],
        "mean_hypervolume_population": {
            name: float(np.mean(results[name]["hypervolume_population"])) for name in BOOKKEEPINGS
        },
        "mean_hypervolume_archive": {
            name: float(np.mean(results[name]["hypervolume_archive"])) for name in BOOKKEEPINGS
        },
        "jmetalpy_minus_deap_population_mean": float(np.mean(differences)),
        "jmetalpy_wins": int(np.sum(differences > 0)),
        # two-sided: no direction is expected, the question is whether the bookkeeping matters at all
        "wilcoxon_p": float(wilcoxon(jmetalpy, deap).pvalue) if np.any(differences) else 1.0,
        "duplicates_dropped_by_jmetalpy": int(
            sum(results["jmetalpy"]["front_size_keeping_equal_objectives"])
            - sum(results["jmetalpy"]["front_size_population"])
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", type=Path, help="experiment config (default: the demo)")
    parser.add_argument("--problem", choices=("fake", "config"), default="fake")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-evaluations", type=int, default=None)
    parser.add_argument(
        "--test-size", type=int, default=360, help="the fake problem's test-set size (the demo's is 360)"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the results directories here")
    args = parser.parse_args(argv)
    config = load_config(args.config or demo_config_path())
    search = config.search.model_copy(update={"runs": args.seeds})
    if args.max_evaluations is not None:
        search = search.model_copy(update={"max_evaluations": args.max_evaluations})
    config = config.model_copy(update={"search": search})
    backend: MaskEvaluator
    if args.problem == "fake":
        backend, feature_key, mask_length = FakeProblem(test_size=args.test_size), "fake", 64
    else:
        from evoprune.workers.features.assemble import load_feature_set

        feature_set = load_feature_set(config, progress=False)
        mask_length = config.head.mask_length(feature_set.input_dim)
        feature_key = feature_set.key
        from evoprune.workers.evaluation.evaluator import BatchedEvaluator

        backend = BatchedEvaluator(feature_set, config)
    with tempfile.TemporaryDirectory() as scratch:
        result = compare(config, backend, feature_key, mask_length, args.out or Path(scratch))
    result["problem"] = args.problem if args.problem == "config" else f"fake (test size {args.test_size})"
    means = result["mean_hypervolume_population"]
    print(
        f"{config.name} ({result['problem']}): population-front hypervolume deap {means['deap']:.4f}, "
        f"jmetalpy {means['jmetalpy']:.4f} over {args.seeds} seeds x {search.max_evaluations} evaluations "
        f"(jmetalpy better on {result['jmetalpy_wins']}, Wilcoxon p = {result['wilcoxon_p']:.3f}); "
        f"de-duplication dropped {result['duplicates_dropped_by_jmetalpy']} front member(s)",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
