"""Search quality: NSGA-II's hypervolume after the budget against random search, over several seeds.

Run: python -m evoprune.benchmarks.bench_search_quality [CONFIG] [--seeds 5] [--max-evaluations 200]
     [--out DIR] [--threads N]
No CONFIG compares on the embedded demo. The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import mannwhitneyu

from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.nsga2 import NSGA2
from evoprune.shared.config import ExperimentConfig, SearchConfig, demo_config_path, load_config
from evoprune.shared.objectives import Evaluation
from evoprune.shared.pareto import hypervolume
from evoprune.shared.screening import ScreeningRequest

if TYPE_CHECKING:
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator
    from evoprune.workers.features.feature_set import FeatureSet

# random search draws its masks from a seed stream disjoint from NSGA-II's runs
RANDOM_SEED_OFFSET = 10_000
# the most masks one thread takes at a time: the random search's single large call is cut into pieces this
# size so that the threads share it out to the end (the Ray path's MAX_MASKS_PER_CALL)
MASKS_PER_CHUNK = 256


class ThreadedBackend:
    """Evaluates each batch on several threads, one `BatchedEvaluator` each, in contiguous chunks.

    One evaluator trains on one core (its XLA computation is single-threaded on a CPU), so a batch cut into
    a chunk per thread uses every core, as the Ray path cuts it across workers. A mask's objectives do not
    depend on the masks it is batched with (tests/workers/evaluation/test_company.py), so the chunking
    changes no result.
    """

    def __init__(self, feature_set: FeatureSet, config: ExperimentConfig, threads: int) -> None:
        """Builds one evaluator per thread.

        Args:
            feature_set: the features to train on.
            config: the experiment (its head, training and robustness protocol).
            threads: how many chunks train at the same time.
        """
        from evoprune.workers.evaluation.evaluator import BatchedEvaluator  # heavy: TensorFlow/JAX

        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads
        # each chunk takes an idle evaluator and gives it back: the pool has as many threads as evaluators,
        # so one is always free and no evaluator is used by two threads at once
        self._idle: queue.SimpleQueue[BatchedEvaluator] = queue.SimpleQueue()
        for _ in range(threads):
            self._idle.put(BatchedEvaluator(feature_set, config))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="evaluator")

    def evaluate(self, masks: np.ndarray, screening: ScreeningRequest | None = None) -> list[Evaluation]:
        """Evaluations of `masks`, in order, trained chunk by chunk on the threads.

        Args:
            masks: (P, L) bools.
            screening: as for `BatchedEvaluator.evaluate`.

        Returns:
            P evaluations in mask order.
        """
        pieces = max(1, min(len(masks), self.threads), -(-len(masks) // MASKS_PER_CHUNK))
        bounds = np.linspace(0, len(masks), pieces + 1).round().astype(int)
        futures = [
            self._pool.submit(
                self._evaluate_chunk,
                masks[start:stop],
                None if screening is None else screening.sliced(start, stop),
            )
            for start, stop in itertools.pairwise(bounds)
            if stop > start
        ]
        return [evaluation for future in futures for evaluation in future.result()]

    def _evaluate_chunk(self, masks: np.ndarray, screening: ScreeningRequest | None) -> list[Evaluation]:
        evaluator = self._idle.get()
        try:
            return evaluator.evaluate(masks, screening)
        finally:
            self._idle.put(evaluator)

    def close(self) -> None:
        """Stops the threads (after the chunks in flight)."""
        self._pool.shutdown()


def default_threads() -> int:
    """The cores this process may run on (one evaluator thread each)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def compare(
    config: ExperimentConfig, seeds: int, out_dir: Path, threads: int | None = None
) -> dict[str, Any]:
    """Run `seeds` NSGA-II runs side by side and as many random searches, with the same budget each.

    Args:
        config: the experiment (its search settings give the budget and NSGA-II's parameters).
        seeds: how many runs of each method.
        out_dir: where the NSGA-II experiment writes its results directory.
        threads: evaluator threads every batch is shared out to (default: one per usable core); the results
            do not depend on it, the wall time does.

    Returns:
        Hypervolumes per seed of both methods, wins, the one-sided Mann-Whitney U p-value and timings.

    """
    from evoprune.workers.features.assemble import load_feature_set

    feature_set = load_feature_set(config, progress=False)
    mask_length = config.head.mask_length(feature_set.input_dim)
    budget = config.search.max_evaluations
    nsga_config = config.model_copy(update={"search": config.search.model_copy(update={"runs": seeds})})
    backend = ThreadedBackend(feature_set, config, threads or default_threads())
    evaluator = InProcessEvaluator(backend)
    try:
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
        # fitness is a function of the mask: a mask drawn twice (the all-zero and all-one masks are, about
        # 1/128 of draws each) is trained once
        unique, inverse = np.unique(masks, axis=0, return_inverse=True)
        evaluations = evaluator.evaluate(unique)
        random_s = time.perf_counter() - started
    finally:
        evaluator.close()
        backend.close()
    objectives = np.array([[1 - e.accuracy, e.active_fraction, 1 - e.auroc] for e in evaluations])
    random = [float(hypervolume(chunk)) for chunk in np.split(objectives[inverse.reshape(-1)], seeds)]

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
        "threads": backend.threads,
        "nsga2_masks_trained": summary.aggregate.evaluations - summary.aggregate.cache_hits,
        "random_masks_trained": len(unique),
        "nsga2_s": round(nsga_s, 1),
        "random_s": round(random_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", type=Path, help="experiment config (default: the demo)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-evaluations", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep NSGA-II's results directory here")
    parser.add_argument("--threads", type=int, default=None, help="evaluator threads (default: one per core)")
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = demo_config_path()
    config = load_config(args.config)
    if args.max_evaluations is not None:
        config = config.model_copy(
            update={"search": config.search.model_copy(update={"max_evaluations": args.max_evaluations})}
        )
    with tempfile.TemporaryDirectory() as scratch:
        result = compare(config, args.seeds, args.out or Path(scratch), args.threads)
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
