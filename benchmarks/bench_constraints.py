"""A constrained search against an unconstrained one followed by a pick: the best feasible accuracy.

Run: python -m evoprune.benchmarks.bench_constraints [--problems digits,rps] [--seeds 5]
     [--population 12] [--max-evaluations 60] [--max-epochs 20] [--rps-train 300]
     [--digits-cap 0.2] [--rps-cap 0.1] [--out FILE]

Question (issue 25): a user wants "the most accurate network under X % of the inputs". Either the search
keeps to the bound (`search.constraints.max_active_fraction`, Deb's constrained domination), or it spends
its budget on the whole front and the best feasible member is picked afterwards. Both get the same number
of evaluations per seed (the initial population included, cache hits counted, as the design's stopping
rule); the measure is the best accuracy, on the fitness split, among the run's evaluations that keep to
the bound (what `summary.json`'s `best_feasible_accuracy` reports; the unconstrained run's best feasible
pick is the same number read off its archive front).

Problems: `digits` is the embedded demo (scikit-learn's digits pixels, its sample photos as OoD, the demo's
protocol: 20 epochs, early stopping); `rps` is synthetic features of rock-paper-scissors' shape (2048
features, 3 classes, 372 test and OoD rows; benchmarks.bench_evaluator.synthetic_rps) with `--rps-train`
training rows, on the same protocol. All runs of a problem share one evaluator process and one fitness
cache: objectives are a function of the mask alone, so a mask both searches ask is trained once (the two
searches of a seed start from the same initial population). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from evoprune.benchmarks.bench_evaluator import synthetic_rps
from evoprune.coordinator.constraints import Constraints
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.config import ConstraintsConfig, ExperimentConfig, demo_config_path, load_config
from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.workers.features.feature_set import FeatureSet

PROBLEMS = ("digits", "rps")


def problem(name: str, args: argparse.Namespace) -> tuple[ExperimentConfig, FeatureSet]:
    """The demo's config with the search settings asked for, and the features of one problem."""
    base = load_config(demo_config_path()).model_dump(mode="json")
    base["training"] = {**base["training"], "max_epochs": args.max_epochs}
    base["search"] = {
        "population_size": args.population,
        "max_evaluations": args.max_evaluations,
        "offspring_per_step": 2,
        "runs": 1,
    }
    base["name"] = f"constraints-{name}"
    config = ExperimentConfig.model_validate(base)
    if name == "digits":
        from evoprune.workers.features.assemble import load_feature_set

        return config, load_feature_set(config, progress=False)
    return config, synthetic_rps(0, train_samples=args.rps_train)


class ModeOutcome(TypedDict):
    """One seed's run in one mode: best accuracy within the cap (None: none kept to it), how many kept."""

    best_feasible_accuracy: float | None
    feasible_evaluations: int


class SeedResult(TypedDict):
    """One seed: the unconstrained run (then a pick) and the constrained one."""

    seed: int
    unconstrained: ModeOutcome
    constrained: ModeOutcome


class ModeSummary(TypedDict):
    """One mode over the seeds: spreads (`spread`) of its best feasible accuracy and feasible evaluations."""

    best_feasible_accuracy: dict[str, float]
    feasible_evaluations: dict[str, float]
    runs_without_feasible: int


class ProblemComparison(TypedDict):
    """One problem's element of the JSON line."""

    problem: str
    features: dict[str, int]  # training rows and inputs
    max_active_fraction: float
    max_epochs: int
    population: int
    max_evaluations: int
    seeds: int
    seconds: float
    modes: dict[str, ModeSummary]  # constrained, unconstrained
    difference: dict[str, float]
    constrained_wins: int
    ties: int
    per_seed: list[SeedResult]
    table_row: str


def best_feasible(accuracy: list[float], active: list[float], cap: float) -> tuple[float | None, int]:
    """The best accuracy among evaluations within the cap, and how many kept to it."""
    kept = [value for value, fraction in zip(accuracy, active, strict=True) if fraction <= cap]
    return (max(kept) if kept else None), len(kept)


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def compare(
    name: str, cap: float, args: argparse.Namespace, scratch: Path, log: Callable[[str], None]
) -> ProblemComparison:
    """Constrained against unconstrained-then-pick on one problem, over the seeds."""
    config, features = problem(name, args)
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator  # TensorFlow/JAX: imported when used

    evaluator = InProcessEvaluator(BatchedEvaluator(features, config))
    cache = LocalFitnessCache()
    mask_length = config.head.mask_length(features.input_dim)
    per_seed: list[SeedResult] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        outcomes: dict[str, ModeOutcome] = {}
        for mode, limits in (("unconstrained", ConstraintsConfig()), ("constrained", None)):
            constraints = limits or ConstraintsConfig(max_active_fraction=cap)
            search = config.search.model_copy(update={"seed": seed, "constraints": constraints})
            variant = config.model_copy(update={"search": search})
            directory = scratch / name / f"{seed}-{mode}"
            experiment = Experiment(
                variant,
                directory,
                features.key,
                mask_length,
                evaluator,
                cache=cache,
                constraints=Constraints.of(variant, features.input_dim, features.num_classes),
            )
            experiment.start()
            experiment.run()
            rows = read_evaluations(directory)
            best, feasible = best_feasible(
                [row["accuracy"] for row in rows], [row["active_fraction"] for row in rows], cap
            )
            outcomes[mode] = {"best_feasible_accuracy": best, "feasible_evaluations": feasible}
        result: SeedResult = {
            "seed": seed,
            "unconstrained": outcomes["unconstrained"],
            "constrained": outcomes["constrained"],
        }
        per_seed.append(result)
        constrained, unconstrained = result["constrained"], result["unconstrained"]
        log(
            f"{name} seed {seed}: best feasible accuracy constrained {constrained['best_feasible_accuracy']} "
            f"({constrained['feasible_evaluations']} feasible) vs unconstrained "
            f"{unconstrained['best_feasible_accuracy']} ({unconstrained['feasible_evaluations']} feasible)"
        )
    spreads: dict[str, dict[str, dict[str, float]]] = {}
    summary: dict[str, ModeSummary] = {}
    by_mode = {
        "constrained": [run["constrained"] for run in per_seed],
        "unconstrained": [run["unconstrained"] for run in per_seed],
    }
    for mode, runs in by_mode.items():
        # a run that found nothing feasible scores 0: it has nothing to offer the user
        scores = [outcome["best_feasible_accuracy"] or 0.0 for outcome in runs]
        spreads[mode] = {
            "best_feasible_accuracy": spread(scores),
            "feasible_evaluations": spread([float(outcome["feasible_evaluations"]) for outcome in runs]),
        }
        without = sum(outcome["best_feasible_accuracy"] is None for outcome in runs)
        summary[mode] = {
            "best_feasible_accuracy": spreads[mode]["best_feasible_accuracy"],
            "feasible_evaluations": spreads[mode]["feasible_evaluations"],
            "runs_without_feasible": without,
        }
    differences = [
        (run["constrained"]["best_feasible_accuracy"] or 0.0)
        - (run["unconstrained"]["best_feasible_accuracy"] or 0.0)
        for run in per_seed
    ]
    return {
        "problem": name,
        "features": {"train": len(features.folds[0].train), "inputs": features.input_dim},
        "max_active_fraction": cap,
        "max_epochs": config.training.max_epochs,
        "population": args.population,
        "max_evaluations": args.max_evaluations,
        "seeds": args.seeds,
        "seconds": round(time.perf_counter() - started, 1),
        "modes": summary,
        "difference": spread(differences),
        "constrained_wins": sum(d > 0 for d in differences),
        "ties": sum(d == 0 for d in differences),
        "per_seed": per_seed,
        "table_row": table_row(name, cap, spreads, differences),
    }


TABLE_HEADER = (
    "| problem | cap | best feasible accuracy, constrained | unconstrained + pick "
    "| difference (mean ± sd) | constrained better / tied / worse "
    "| feasible evaluations, constrained vs unconstrained |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def table_row(
    problem: str, cap: float, modes: dict[str, dict[str, dict[str, float]]], differences: list[float]
) -> str:
    """One problem's markdown row of the table BENCHMARKS.md shows."""
    constrained, unconstrained = modes["constrained"], modes["unconstrained"]
    c, u = constrained["best_feasible_accuracy"], unconstrained["best_feasible_accuracy"]
    d = spread(differences)
    wins, ties = sum(x > 0 for x in differences), sum(x == 0 for x in differences)
    return (
        f"| {problem} | {cap:g} "
        f"| {c['mean']:.4f} ± {c['std']:.4f} [{c['min']:.4f}, {c['max']:.4f}] "
        f"| {u['mean']:.4f} ± {u['std']:.4f} [{u['min']:.4f}, {u['max']:.4f}] "
        f"| {d['mean']:+.4f} ± {d['std']:.4f} "
        f"| {wins} / {ties} / {len(differences) - wins - ties} "
        f"| {constrained['feasible_evaluations']['mean']:.0f} "
        f"vs {unconstrained['feasible_evaluations']['mean']:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--max-evaluations", type=int, default=60)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--rps-train", type=int, default=300, help="training rows of the rps problem")
    parser.add_argument("--digits-cap", type=float, default=0.2, help="max_active_fraction on digits")
    parser.add_argument("--rps-cap", type=float, default=0.1, help="max_active_fraction on rps")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.problems.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROBLEMS]
    if unknown or not names:
        parser.error(f"--problems: {', '.join(unknown) or 'none given'}; choose from {', '.join(PROBLEMS)}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    caps = {"digits": args.digits_cap, "rps": args.rps_cap}
    for name, cap in caps.items():
        if not 0.0 < cap <= 1.0:
            parser.error(f"--{name}-cap must lie in (0, 1], got {cap}")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        results = [compare(name, caps[name], args, Path(scratch), log) for name in names]
    log("\n".join([TABLE_HEADER, *(result["table_row"] for result in results)]))
    text = json.dumps(results)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
