"""Search quality: NSGA-II's hypervolume after the budget against random search, over several seeds.

Run: python -m evoprune.benchmarks.bench_search_quality [CONFIG] [--seeds 5] [--max-evaluations 200]
     [--out DIR]
No CONFIG compares on the embedded demo. The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.nsga2 import NSGA2
from evoprune.shared.config import ExperimentConfig, SearchConfig, demo_config_path, load_config
from evoprune.shared.pareto import hypervolume

# random search draws its masks from a seed stream disjoint from NSGA-II's runs
RANDOM_SEED_OFFSET = 10_000


def random_search_masks(mask_length: int, budget: int, seed: int) -> np.ndarray:
    """`budget` masks drawn as the reference draws its initial population (p ~ U(0,1), round(p·L) ones).

    Args:
        mask_length: bits per mask.
        budget: evaluations allowed.
        seed: the random-search run's seed.

    Returns:
        A (budget, mask_length) boolean array.

    """
    search = NSGA2(mask_length, SearchConfig(population_size=budget, max_evaluations=budget), seed)
    return search.ask().masks


def compare(config: ExperimentConfig, seeds: int, out_dir: Path) -> dict[str, Any]:
    """Run `seeds` NSGA-II runs side by side and as many random searches, with the same budget each.

    Args:
        config: the experiment (its search settings give the budget and NSGA-II's parameters).
        seeds: how many runs of each method.
        out_dir: where the NSGA-II experiment writes its results directory.

    Returns:
        Hypervolumes per seed of both methods, wins, the one-sided Mann-Whitney U p-value and timings.

    """
    from evoprune.workers.features.assemble import load_feature_set

    feature_set = load_feature_set(config, progress=False)
    mask_length = config.head.mask_length(feature_set.input_dim)
    budget = config.search.max_evaluations
    nsga_config = config.model_copy(update={"search": config.search.model_copy(update={"runs": seeds})})
    evaluator = InProcessEvaluator.for_feature_set(feature_set, config)

    started = time.perf_counter()
    experiment = Experiment(nsga_config, out_dir / "nsga2", feature_set.key, mask_length, evaluator)
    experiment.start()
    summary = experiment.run()
    nsga_s = time.perf_counter() - started
    # both sides are archive fronts: random search keeps no population
    nsga = [run.front.hypervolume_archive for run in summary.runs]

    started = time.perf_counter()
    seed_list = [config.search.seed + RANDOM_SEED_OFFSET + index for index in range(seeds)]
    masks = np.concatenate([random_search_masks(mask_length, budget, seed) for seed in seed_list])
    evaluations = evaluator.evaluate(masks)
    random_s = time.perf_counter() - started
    objectives = np.array([[1 - e.accuracy, e.active_fraction, 1 - e.auroc] for e in evaluations])
    random = [float(hypervolume(chunk)) for chunk in np.split(objectives, seeds)]
    evaluator.close()

    test = mannwhitneyu(nsga, random, alternative="greater")
    return {
        "config": config.name,
        "mask_length": mask_length,
        "evaluations_per_run": budget,
        "seeds": seeds,
        "nsga2_hypervolume": nsga,
        "random_hypervolume": random,
        "nsga2_mean": float(np.mean(nsga)),
        "random_mean": float(np.mean(random)),
        "mean_difference": float(np.mean(nsga) - np.mean(random)),
        "nsga2_beats_every_random": bool(min(nsga) > max(random)),
        "mann_whitney_p": float(test.pvalue),
        "nsga2_s": round(nsga_s, 1),
        "random_s": round(random_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", type=Path, help="experiment config (default: the demo)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-evaluations", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep NSGA-II's results directory here")
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = demo_config_path()
    config = load_config(args.config)
    if args.max_evaluations is not None:
        config = config.model_copy(
            update={"search": config.search.model_copy(update={"max_evaluations": args.max_evaluations})}
        )
    with tempfile.TemporaryDirectory() as scratch:
        result = compare(config, args.seeds, args.out or Path(scratch))
    print(
        f"{config.name}: NSGA-II hypervolume {result['nsga2_mean']:.4f} vs random search "
        f"{result['random_mean']:.4f} over {args.seeds} seeds x {config.search.max_evaluations} evaluations "
        f"(one-sided Mann-Whitney p = {result['mann_whitney_p']:.4f})",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
