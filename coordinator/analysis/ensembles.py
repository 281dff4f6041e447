"""Ensembles of the analysis per percentile window of front accuracy (vote, mean softmax): table, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import pyarrow as pa

from evoprune.coordinator.analysis.importance import FLOAT
from evoprune.coordinator.analysis.inputs import ResultsInput
from evoprune.coordinator.analysis.plots import plot_ensembles
from evoprune.coordinator.analysis.rows import EnsembleRow
from evoprune.coordinator.results.artifacts import write_table
from evoprune.workers.features.feature_set import FeatureSet

EnsembleSummaryKey = Literal[
    "window_lower",
    "window_upper",
    "members",
    "accuracy",
    "auroc",
    "softmax_accuracy",
    "best_accuracy",
    "best_auroc",
    "test_accuracy",
    "test_auroc",
]
# the columns of each ensemble that analysis.json repeats (the test ones only when the rows have them)
ENSEMBLE_SUMMARY_KEYS: tuple[EnsembleSummaryKey, ...] = get_args(EnsembleSummaryKey)


def ensemble_table(inputs: ResultsInput, features: FeatureSet, models: list, out: Path) -> list[EnsembleRow]:
    """Build the window ensembles of the re-trained front; write their table and plot.

    Args:
        inputs: the results being analysed.
        features: the experiment's features.
        models: the re-trained front members, in front order.
        out: the folder the analysis writes.

    Returns:
        One row per window.

    """
    from evoprune.workers.analysis.ensembles import window_ensembles

    config = inputs.config
    with_test = config.fitness_split == "validation"
    rows: list[EnsembleRow] = []
    robustness = config.robustness
    for result in window_ensembles(
        models, features, robustness.temperature, estimator=robustness.auroc_estimator
    ):
        members = [models[m] for m in result.members]
        row: EnsembleRow = {
            "window_lower": result.window[0],
            "window_upper": result.window[1],
            "accuracy_low": result.accuracy_range[0],
            "accuracy_high": result.accuracy_range[1],
            "members": len(result.members),
            "member_masks": [inputs.aggregate[m]["mask"] for m in result.members],
            "member_accuracies": [model.evaluation.accuracy for model in members],
            "member_aurocs": [model.evaluation.auroc for model in members],
            "accuracy": result.accuracy,
            "auroc": result.auroc,
            # what `evoprune export --ensemble LOWER-UPPER` (mean softmax) reproduces
            "softmax_accuracy": result.softmax_accuracy,
            "best_mask": None if result.best_member is None else inputs.aggregate[result.best_member]["mask"],
            "best_accuracy": result.best_accuracy,
            "best_auroc": result.best_auroc,
        }
        if with_test:
            row["test_accuracy"] = result.test_accuracy
            row["test_auroc"] = result.test_auroc
            row["test_softmax_accuracy"] = result.test_softmax_accuracy
            row["best_test_accuracy"] = result.best_test_accuracy
            row["best_test_auroc"] = result.best_test_auroc
        rows.append(row)
    write_table(out / "ensembles.parquet", rows, _ensembles_schema(with_test))
    plot_ensembles(rows, out / "ensembles.png", f"{config.name}: ensembles of the aggregated front")
    return rows


def _ensembles_schema(with_test: bool) -> pa.Schema:
    fields = [
        ("window_lower", pa.int32()),
        ("window_upper", pa.int32()),
        ("accuracy_low", FLOAT),
        ("accuracy_high", FLOAT),
        ("members", pa.int32()),
        ("member_masks", pa.list_(pa.string())),
        ("member_accuracies", pa.list_(FLOAT)),
        ("member_aurocs", pa.list_(FLOAT)),
        ("accuracy", FLOAT),
        ("auroc", FLOAT),
        ("softmax_accuracy", FLOAT),
        ("best_mask", pa.string()),
        ("best_accuracy", FLOAT),
        ("best_auroc", FLOAT),
    ]
    if with_test:
        fields += [
            (name, FLOAT)
            for name in (
                "test_accuracy",
                "test_auroc",
                "test_softmax_accuracy",
                "best_test_accuracy",
                "best_test_auroc",
            )
        ]
    return pa.schema(fields)
