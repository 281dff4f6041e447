"""The analysis's neuron importance: each mask bit's frequency in the front, its top ranks, table and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from evoprune.coordinator.analysis.inputs import ResultsInput
from evoprune.coordinator.analysis.plots import plot_importance
from evoprune.coordinator.analysis.rows import ImportanceRow
from evoprune.coordinator.results.artifacts import artifact, write_table
from evoprune.workers.analysis.importance import (
    BitMeaning,
    bit_frequencies,
    bit_label,
    bit_meanings,
    solutions_using,
    top_bits,
)
from evoprune.workers.features.feature_set import FeatureSet

OBJECTIVES = ("accuracy", "active_fraction", "auroc")
FLOAT = pa.float64()
IMPORTANCE_SCHEMA = pa.schema(
    [
        ("bit", pa.int32()),
        ("segment", pa.int32()),
        ("position", pa.int32()),
        ("unit", pa.int32()),
        ("label", pa.string()),
        ("count", pa.int32()),
        ("frequency", FLOAT),
        ("rank", pa.int32()),
        ("mean_accuracy", FLOAT),
        ("mean_active_fraction", FLOAT),
        ("mean_auroc", FLOAT),
        ("best_accuracy", FLOAT),
    ]
)


def neuron_importance(
    inputs: ResultsInput, features: FeatureSet, top: int, out: Path
) -> tuple[list[dict[str, str]], list[ImportanceRow], list[BitMeaning], list[int], np.ndarray]:
    """Count how often each bit is on across the aggregated front; write its table, top solutions and plot.

    Args:
        inputs: the results being analysed.
        features: the experiment's features (their width and classes shape the head).
        top: how many of the most frequent bits to rank.
        out: the folder the analysis writes.

    Returns:
        (artifacts written, the top bits' rows, every bit's meaning, the top bits in rank order, frequencies).

    """
    from evoprune.workers.evaluation.head_layout import head_shape

    config = inputs.config
    counts, frequencies = bit_frequencies(inputs.masks)
    order = [int(bit) for bit in top_bits(counts, top)]
    rank_of = {bit: rank for rank, bit in enumerate(order, start=1)}
    shape = head_shape(config.head, features.input_dim, features.num_classes)
    meanings = bit_meanings(shape)
    rows: list[ImportanceRow] = []
    for meaning in meanings:
        users = [inputs.aggregate[i] for i in solutions_using(inputs.masks, meaning.bit)]
        rows.append(
            {
                "bit": meaning.bit,
                "segment": meaning.segment,
                "position": meaning.position,
                "unit": meaning.unit,
                "label": bit_label(meaning),
                "count": int(counts[meaning.bit]),
                "frequency": float(frequencies[meaning.bit]),
                "rank": rank_of.get(meaning.bit),
                "mean_accuracy": _mean([u["accuracy"] for u in users]),
                "mean_active_fraction": _mean([u["active_fraction"] for u in users]),
                "mean_auroc": _mean([u["auroc"] for u in users]),
                "best_accuracy": max((u["accuracy"] for u in users), default=None),
            }
        )
    write_table(out / "importance.parquet", rows, IMPORTANCE_SCHEMA)
    solutions = [
        {"rank": rank_of[bit], "bit": bit, "label": rows[bit]["label"]}
        | {key: inputs.aggregate[i].get(key) for key in ("mask", *OBJECTIVES, *test_columns(inputs))}
        for bit in order
        for i in solutions_using(inputs.masks, bit)
    ]
    write_table(out / "importance_solutions.parquet", solutions, _solutions_schema(inputs))
    top_rows = [rows[bit] for bit in order]
    plot_importance(
        top_rows, out / "importance.png", f"{config.name}: the {len(order)} most frequent neurons"
    )
    written = [
        artifact("importance.parquet", "frequency of every mask bit in the aggregated front, top ranks"),
        artifact("importance_solutions.parquet", "objectives of the front members that use each top neuron"),
        artifact(
            "importance.png", "bar plot of the top neurons' frequency, with their solutions' objectives"
        ),
    ]
    return written, top_rows, meanings, order, frequencies


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def test_columns(inputs: ResultsInput) -> tuple[str, ...]:
    """The test-split columns a front has: only when it was selected on the validation split."""
    return ("test_accuracy", "test_auroc") if inputs.config.fitness_split == "validation" else ()


def _solutions_schema(inputs: ResultsInput) -> pa.Schema:
    fields = [("rank", pa.int32()), ("bit", pa.int32()), ("label", pa.string()), ("mask", pa.string())]
    return pa.schema(fields + [(name, FLOAT) for name in (*OBJECTIVES, *test_columns(inputs))])
