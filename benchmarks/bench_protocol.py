"""The measured size of every protocol point where the defaults differ from the reference (docs/PROTOCOL.md).

Run: evoprune run --out DIR  (the demo)  &&  python -m evoprune.benchmarks.bench_protocol DIR [--cases 200]
Measures (1) the AUROC estimators on random score sets, (2) both estimators on the same logits of the demo's
aggregated population front, re-trained from its masks, (3) the OoD sample (random per fold against the
first images of each class) on that front, (4) the best-weight restore (always against only when early
stopping fired) on that front, and (5) the zero mask. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TypedDict

import numpy as np

from evoprune.coordinator.analysis.inputs import read_results
from evoprune.shared.config import ExperimentConfig
from evoprune.workers.evaluation.odin import auroc, odin_scores, reference_auroc
from evoprune.workers.evaluation.retrain import RetrainedModel, retrain
from evoprune.workers.features.assemble import load_feature_set


class Stats(TypedDict):
    """Minimum, mean and maximum of some differences, and the mean and maximum of their magnitudes."""

    min: float
    mean: float
    max: float
    mean_abs: float
    max_abs: float


class RandomCases(TypedDict):
    """Reference minus exact AUROC over random score sets."""

    cases: int
    reference_minus_exact: Stats


class PerObjective(TypedDict):
    """A difference's statistics per objective."""

    accuracy: Stats
    auroc: Stats


class ZeroMask(TypedDict):
    """The zero mask's accuracy and both AUROCs of its constant logits."""

    accuracy: float
    auroc_exact: float
    auroc_reference: float


class FrontCases(TypedDict):
    """The protocol points measured on the demo's aggregated population front."""

    front_size: int
    max_epochs: int
    restore_epochs: int
    early_stopped: int
    estimator_reference_minus_exact: Stats
    estimator_reference_minus_exact_without_zero_mask: Stats
    ood_first_n_minus_random: PerObjective
    restore_when_stopped_minus_always: PerObjective
    zero_mask: ZeroMask
    seconds: float


class ProtocolResult(TypedDict):
    """The JSON line."""

    benchmark: str
    random: RandomCases
    demo: FrontCases


def _stats(values: list[float] | np.ndarray) -> Stats:
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": float(array.min()),
        "mean": float(array.mean()),
        "max": float(array.max()),
        "mean_abs": float(np.abs(array).mean()),
        "max_abs": float(np.abs(array).max()),
    }


def random_cases(cases: int, seed: int = 0) -> RandomCases:
    """Reference minus exact AUROC on random ODIN scores of random separations and sizes."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(cases):
        classes = int(rng.integers(3, 15))
        inside = rng.normal(0, 1, (int(rng.integers(100, 1500)), classes))
        inside[:, 0] += rng.uniform(0, 6)  # a confident winning class: the in-distribution case
        outside = rng.normal(0, 1, (int(rng.integers(100, 1500)), classes)) * rng.uniform(0.5, 2)
        scores_in, scores_out = odin_scores(inside * 50, 1000.0), odin_scores(outside * 50, 1000.0)
        differences.append(reference_auroc(scores_in, scores_out) - auroc(scores_in, scores_out))
    return {"cases": cases, "reference_minus_exact": _stats(differences)}


def _objectives(models: list[RetrainedModel]) -> np.ndarray:
    return np.array([(m.evaluation.accuracy, m.evaluation.auroc) for m in models])


def front_cases(results_dir: Path, restore_epochs: int | None = None) -> FrontCases:
    """The protocol points measured on the demo's aggregated population front.

    Args:
        results_dir: a finished demo experiment.
        restore_epochs: max_epochs for the restore comparison (None: the experiment's own); the demo's 20
            epochs rarely let early stopping fire, which is where the two rules differ most.

    Returns:
        The measured differences.

    """
    inputs = read_results(results_dir, "population")
    config: ExperimentConfig = inputs.config
    masks = inputs.masks
    features = load_feature_set(config, progress=False)
    started = time.perf_counter()
    models = retrain(features, config, masks)
    estimator = []
    for model in models:
        fold_differences = [
            reference_auroc(odin_scores(f.evaluation_logits, 1000.0), odin_scores(f.ood_logits, 1000.0))
            - auroc(odin_scores(f.evaluation_logits, 1000.0), odin_scores(f.ood_logits, 1000.0))
            for f in model.folds
        ]
        estimator.append(float(np.mean(fold_differences)))
    base = _objectives(models)
    # the zero mask scores constant logits: 0.5 against 1.0 by definition, reported on its own below
    informative = masks.any(axis=1)

    first_n = config.model_copy(
        update={"robustness": config.robustness.model_copy(update={"ood_sampling": "first_n"})}
    )
    first_n_models = retrain(load_feature_set(first_n, progress=False), first_n, masks)
    ood = _objectives(first_n_models) - base

    epochs = restore_epochs or config.training.max_epochs

    def restoring(rule: str) -> ExperimentConfig:
        training = config.training
        stopping = training.early_stopping.model_copy(update={"restore_best_weights": rule})
        return config.model_copy(
            update={
                "training": training.model_copy(update={"early_stopping": stopping, "max_epochs": epochs})
            }
        )

    always_models = retrain(features, restoring("always"), masks)
    restore = _objectives(retrain(features, restoring("when_stopped"), masks)) - _objectives(always_models)
    stopped = sum(m.evaluation.epochs < epochs for m in always_models)

    zero = retrain(features, config, np.zeros((1, masks.shape[1]), dtype=bool))[0]
    zero_fold = zero.folds[0]
    zero_scores = (
        odin_scores(zero_fold.evaluation_logits, 1000.0),
        odin_scores(zero_fold.ood_logits, 1000.0),
    )
    return {
        "front_size": len(masks),
        "max_epochs": config.training.max_epochs,
        "restore_epochs": epochs,
        "early_stopped": int(stopped),
        "estimator_reference_minus_exact": _stats(estimator),
        "estimator_reference_minus_exact_without_zero_mask": _stats(np.asarray(estimator)[informative]),
        "ood_first_n_minus_random": {"accuracy": _stats(ood[:, 0]), "auroc": _stats(ood[:, 1])},
        "restore_when_stopped_minus_always": {
            "accuracy": _stats(restore[:, 0]),
            "auroc": _stats(restore[:, 1]),
        },
        "zero_mask": {
            "accuracy": zero.evaluation.accuracy,
            "auroc_exact": auroc(*zero_scores),
            "auroc_reference": reference_auroc(*zero_scores),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> ProtocolResult:
    """Measure every point, print them and the JSON line.

    Args:
        argv: command-line arguments (None: sys.argv).

    Returns:
        The result object printed on the last line.

    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, help="a finished demo experiment (evoprune run --out DIR)")
    parser.add_argument("--cases", type=int, default=200, help="random score sets for the estimators (200)")
    parser.add_argument(
        "--restore-epochs", type=int, default=None, help="max_epochs of the restore comparison (the config's)"
    )
    args = parser.parse_args(argv)
    random = random_cases(args.cases)
    demo = front_cases(args.results_dir, args.restore_epochs)
    result: ProtocolResult = {"benchmark": "protocol", "random": random, "demo": demo}
    random_stats = random["reference_minus_exact"]
    print(
        f"AUROC reference − exact over {args.cases} random cases: min {random_stats['min']:+.5f}, "
        f"mean {random_stats['mean']:+.5f}, max {random_stats['max']:+.5f}"
    )
    for name in ("estimator_reference_minus_exact", "estimator_reference_minus_exact_without_zero_mask"):
        item = demo[name]
        size = demo["front_size"]
        print(f"demo front ({size} masks) {name}: mean {item['mean']:+.5f}, max |·| {item['max_abs']:.5f}")
    differences = {
        "ood_first_n_minus_random": demo["ood_first_n_minus_random"],
        "restore_when_stopped_minus_always": demo["restore_when_stopped_minus_always"],
    }
    for name, per_objective in differences.items():
        for objective, item in (("accuracy", per_objective["accuracy"]), ("auroc", per_objective["auroc"])):
            print(f"demo front {name} {objective}: mean {item['mean']:+.5f}, max |·| {item['max_abs']:.5f}")
    stopped, size, epochs = demo["early_stopped"], demo["front_size"], demo["restore_epochs"]
    print(f"demo: {stopped} of {size} stopped early within {epochs} epochs")
    print(f"zero mask: {demo['zero_mask']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
