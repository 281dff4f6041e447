"""Screening against the full protocol: epochs trained, wall time and the aggregated front's hypervolume.

Run: python -m evoprune.benchmarks.bench_screening [--problems digits,rps] [--seeds 5]
     [--population 30] [--max-evaluations 200] [--max-epochs 600] [--rps-train 2520]
     [--rules 0.1:0:0:0,0.1:0:0:0.002] [--out FILE]

Each problem runs the same NSGA-II search (steady state, 2 offspring per step, the paper's protocol with
early stopping on the training loss) once per seed with the full protocol and once per seed for each
screening rule (BUDGET:MAX_RANK:MARGIN:MIN_GAIN, see shared/screening.py), with the same evaluation
budget. Every run is its own experiment, so no run reuses another's evaluations; all runs of a problem
share one evaluator process (its compiled functions are warm after the first run, which is the full
protocol's of seed 0).

Problems: `digits` is the embedded demo's data (scikit-learn's digits pixels, its sample photos as OoD) at
the reference's 600 epochs; `rps` is synthetic features of rock-paper-scissors' shape (2048 features, 3
classes, 372 test and OoD rows) with `--rps-train` training rows (2520 in RPS). The last line printed is
one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pyarrow.parquet as pq

from evoprune.benchmarks.bench_evaluator import synthetic_rps
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, FrontKind
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.config import ExperimentConfig, ScreeningConfig, demo_config_path, load_config
from evoprune.shared.pareto import hypervolume, pareto_mask
from evoprune.workers.features.feature_set import FeatureSet

PROBLEMS = ("digits", "rps")
DEFAULT_RULES = ("0.1:0:0:0", "0.1:0:0:0.002", "0.05:0:0:0.005")


@dataclass(frozen=True)
class Rule:
    """One screening setting: budget (fraction of max_epochs), max_rank, margin and min_gain."""

    budget: float
    max_rank: int
    margin: float
    min_gain: float

    @classmethod
    def parse(cls, text: str) -> Rule:
        try:
            budget, rank, margin, gain = text.split(":")
            rule = cls(float(budget), int(rank), float(margin), float(gain))
            rule.config()  # the config's own checks of each value's range
        except ValueError as error:
            raise SystemExit(
                f"--rules: {text!r} is not BUDGET:MAX_RANK:MARGIN:MIN_GAIN (e.g. 0.1:0:0:0): {error}"
            ) from None
        return rule

    @property
    def name(self) -> str:
        return f"budget {self.budget:g}, rank {self.max_rank}, margin {self.margin:g}, gain {self.min_gain:g}"

    def config(self) -> ScreeningConfig:
        return ScreeningConfig(
            enabled=True,
            budget=self.budget,
            max_rank=self.max_rank,
            margin=self.margin,
            min_gain=self.min_gain,
        )


def problem(name: str, args: argparse.Namespace) -> tuple[ExperimentConfig, FeatureSet]:
    """The config (the paper's protocol and the search settings asked for) and features of one problem."""
    base = load_config(demo_config_path()).model_dump(mode="json")
    base["protocol"] = "reference"
    base["training"] = {"max_epochs": args.max_epochs}
    base["search"] = {
        "population_size": args.population,
        "max_evaluations": args.max_evaluations,
        "offspring_per_step": 2,
        "runs": 1,
    }
    base["name"] = f"screening-{name}"
    config = ExperimentConfig.model_validate(base)
    if name == "digits":
        from evoprune.workers.features.assemble import load_feature_set

        return config, load_feature_set(config, progress=False)
    return config, synthetic_rps(0, train_samples=args.rps_train)


class SeedCost(TypedDict):
    """One experiment's cost and hypervolumes (one seed, one mode)."""

    seconds: float
    epochs: float
    screened_out: int
    evaluations: int
    hypervolume_archive: float
    hypervolume_population: float


class SeedRun(SeedCost):
    """One experiment's cost, and its aggregated fronts of each kind as minimisation points."""

    fronts: dict[str, list[list[float]]]  # front kind → points


class ModeTotals(TypedDict):
    """One mode over the seeds: totals, union and mean hypervolumes; `compare` adds the ratios to full."""

    epochs: float
    seconds: float
    screened_out: int
    evaluations: int
    hypervolume_archive: float
    mean_run_hypervolume_archive: float
    hypervolume_population: float
    mean_run_hypervolume_population: float
    epoch_reduction: NotRequired[float | None]
    time_reduction: NotRequired[float | None]
    hypervolume_ratio_archive: NotRequired[float]
    hypervolume_ratio_population: NotRequired[float]
    per_seed: NotRequired[list[SeedCost]]


class ScreeningComparison(TypedDict):
    """One problem's element of the JSON line."""

    problem: str
    features: dict[str, int]  # training rows and inputs
    max_epochs: int
    population: int
    max_evaluations: int
    seeds: int
    modes: dict[str, ModeTotals]  # full, then each rule by name


def run_one(
    config: ExperimentConfig, features: FeatureSet, evaluator: InProcessEvaluator, directory: Path
) -> SeedRun:
    """One experiment (one seed, one mode) to the end; its cost and its fronts."""
    mask_length = config.head.mask_length(features.input_dim)
    started = time.perf_counter()
    experiment = Experiment(config, directory, features.key, mask_length, evaluator)
    experiment.start()
    summary = experiment.run()
    seconds = time.perf_counter() - started
    fronts = pq.read_table(ResultsLayout(directory).front).to_pylist()
    aggregate = summary.aggregate
    assert aggregate.epochs_trained is not None  # a fresh experiment's rows all carry their epochs
    return {
        "seconds": seconds,
        "epochs": aggregate.epochs_trained,
        "screened_out": aggregate.screened_out,
        "evaluations": aggregate.evaluations,
        "hypervolume_archive": aggregate.hypervolume_archive,
        "hypervolume_population": aggregate.hypervolume_population,
        "fronts": {
            kind: [
                [1 - row["accuracy"], row["active_fraction"], 1 - row["auroc"]]
                for row in fronts
                if row["kind"] == kind and row["run"] == AGGREGATE_RUN
            ]
            for kind in (FrontKind.ARCHIVE, FrontKind.POPULATION)
        },
    }


def aggregate(runs: list[SeedRun]) -> ModeTotals:
    """Totals over seeds and the hypervolume of the non-dominated union of the seeds' fronts."""
    return {
        "epochs": float(sum(run["epochs"] for run in runs)),
        "seconds": round(sum(run["seconds"] for run in runs), 1),
        "screened_out": int(sum(run["screened_out"] for run in runs)),
        "evaluations": int(sum(run["evaluations"] for run in runs)),
        "hypervolume_archive": _union_hypervolume(runs, FrontKind.ARCHIVE),
        "mean_run_hypervolume_archive": float(np.mean([run["hypervolume_archive"] for run in runs])),
        "hypervolume_population": _union_hypervolume(runs, FrontKind.POPULATION),
        "mean_run_hypervolume_population": float(np.mean([run["hypervolume_population"] for run in runs])),
    }


def _union_hypervolume(runs: list[SeedRun], kind: FrontKind) -> float:
    """The hypervolume of the non-dominated union of the runs' aggregated fronts of one kind."""
    points = np.array([point for run in runs for point in run["fronts"][kind]], dtype=np.float64)
    union = points[pareto_mask(points)] if len(points) else points.reshape(0, 3)
    return float(hypervolume(union))


def compare(
    name: str, args: argparse.Namespace, rules: list[Rule], scratch: Path, log: Callable[[str], None]
) -> ScreeningComparison:
    """Full protocol against every rule on one problem, over the seeds."""
    config, features = problem(name, args)
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator  # TensorFlow/JAX: imported when used

    evaluator = InProcessEvaluator(BatchedEvaluator(features, config))
    modes: dict[str, list[SeedRun]] = {"full": []}
    modes.update({rule.name: [] for rule in rules})
    for seed in range(args.seeds):
        for mode, screening in [("full", ScreeningConfig()), *((rule.name, rule.config()) for rule in rules)]:
            search = config.search.model_copy(update={"seed": seed, "screening": screening})
            variant = config.model_copy(update={"search": search})
            directory = scratch / name / f"{len(modes[mode])}-{mode.replace(' ', '').replace(',', '_')}"
            run = run_one(variant, features, evaluator, directory)
            modes[mode].append(run)
            log(
                f"{name} seed {seed} {mode}: {run['epochs']:.0f} epochs, {run['seconds']:.1f} s, "
                f"{run['screened_out']} screened out, HV archive {run['hypervolume_archive']:.4f}"
            )
    totals = {mode: aggregate(runs) for mode, runs in modes.items()}
    full = totals["full"]
    for mode, total in totals.items():
        total["epoch_reduction"] = full["epochs"] / total["epochs"] if total["epochs"] else None
        total["time_reduction"] = full["seconds"] / total["seconds"] if total["seconds"] else None
        total["hypervolume_ratio_archive"] = total["hypervolume_archive"] / full["hypervolume_archive"]
        total["hypervolume_ratio_population"] = (
            total["hypervolume_population"] / full["hypervolume_population"]
        )
        total["per_seed"] = [
            {
                "seconds": run["seconds"],
                "epochs": run["epochs"],
                "screened_out": run["screened_out"],
                "evaluations": run["evaluations"],
                "hypervolume_archive": run["hypervolume_archive"],
                "hypervolume_population": run["hypervolume_population"],
            }
            for run in modes[mode]
        ]
    return {
        "problem": name,
        "features": {"train": len(features.folds[0].train), "inputs": features.input_dim},
        "max_epochs": config.training.max_epochs,
        "population": args.population,
        "max_evaluations": args.max_evaluations,
        "seeds": args.seeds,
        "modes": totals,
    }


def table(results: list[ScreeningComparison]) -> str:
    """The markdown rows BENCHMARKS.md shows."""
    lines = [
        "| problem | mode | epochs | fewer epochs | wall time | faster | screened out | HV ratio archive "
        "| HV ratio population |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for mode, total in result["modes"].items():
            lines.append(
                f"| {result['problem']} | {mode} | {total['epochs']:.0f} | {total['epoch_reduction']:.2f}× "
                f"| {total['seconds']:.0f} s | {total['time_reduction']:.2f}× "
                f"| {total['screened_out']} / {total['evaluations']} "
                f"| {total['hypervolume_ratio_archive']:.4f} | {total['hypervolume_ratio_population']:.4f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--max-evaluations", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=600)
    parser.add_argument("--rps-train", type=int, default=2520, help="training rows of the rps problem")
    parser.add_argument(
        "--rules", default=",".join(DEFAULT_RULES), help="BUDGET:MAX_RANK:MARGIN:MIN_GAIN,..."
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.problems.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROBLEMS]
    if unknown or not names:
        parser.error(f"--problems: {', '.join(unknown) or 'none given'}; choose from {', '.join(PROBLEMS)}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rules = [Rule.parse(text) for text in args.rules.split(",") if text.strip()]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        results = [compare(name, args, rules, Path(scratch), log) for name in names]
    log(table(results))
    text = json.dumps(results)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
