"""`evoprune analyze`: aggregated fronts, neuron importance, heatmaps and ensembles of an experiment."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evoprune.coordinator.analysis_artifacts import INDEX_NAME, artifact, discard, fresh_staging, publish
from evoprune.coordinator.analysis_heatmaps import draw_heatmaps, head_owners
from evoprune.coordinator.analysis_inputs import AnalysisError, ResultsInput, read_results
from evoprune.coordinator.checkpoint import write_atomic
from evoprune.coordinator.plots import plot_front_3d, plot_front_projections, plot_hypervolume
from evoprune.coordinator.plots_analysis import plot_ensembles, plot_importance
from evoprune.coordinator.results import POPULATION_FRONT, hypervolume_history
from evoprune.workers.features import FeatureSet
from evoprune.workers.importance import (
    DEFAULT_TOP,
    BitMeaning,
    bit_frequencies,
    bit_label,
    bit_meanings,
    solutions_using,
    top_bits,
)

ANALYSIS_FORMAT = "evoprune-analysis"
ANALYSIS_VERSION = 1
DEFAULT_SAMPLES = 4
OBJECTIVES = ("accuracy", "active_fraction", "auroc")
Log = Callable[[str], None]


def analyze(
    results_dir: Path,
    *,
    top: int = DEFAULT_TOP,
    samples: int = DEFAULT_SAMPLES,
    feature_set: FeatureSet | None = None,
    log: Log | None = None,
    front: str = POPULATION_FRONT,
) -> dict[str, Any]:
    """Run every analysis of a finished experiment and write them to results_dir/analysis/.

    The new analysis is written beside the old one and swapped in only when complete, so a failure
    leaves the previous analysis as it was.

    Args:
        results_dir: the experiment's results directory.
        top: how many of the most important neurons to report and draw.
        samples: sample images of the heatmap grid.
        feature_set: the experiment's features, if already loaded (else loaded from the feature cache).
        log: called with a line per stage (the command line prints them).
        front: which fronts to analyse: "population" (the paper's: the non-dominated members of each run's
            final population, aggregated into the super Pareto front) or "archive" (the non-dominated
            set of all evaluations).

    Returns:
        The index written to analysis/analysis.json.

    Raises:
        AnalysisError: the directory cannot be analysed (missing, unfinished, corrupt, or its data gone).

    """
    say = log or (lambda line: None)
    if top < 1 or samples < 1:
        raise AnalysisError(f"top ({top}) and samples ({samples}) must be at least 1")
    started = time.perf_counter()
    inputs = read_results(Path(results_dir), front)
    if feature_set is None:
        say("loading the experiment's features (extracted again if the feature cache lost them)")
    features = feature_set if feature_set is not None else _load_features(inputs, progress=log is not None)
    _check_features(inputs, features)
    staging = fresh_staging(inputs.results_dir)
    try:
        index = _write_all(inputs, features, staging, top, samples, say)
        index["seconds"] = round(time.perf_counter() - started, 3)
        write_atomic(staging / INDEX_NAME, json.dumps(index, indent=2))
        publish(inputs.results_dir, staging)
    except BaseException:
        discard(staging)
        raise
    return index


def _load_features(inputs: ResultsInput, progress: bool) -> FeatureSet:
    from evoprune.workers.assemble import load_feature_set

    try:
        return load_feature_set(inputs.config, progress=progress)
    except (ValueError, OSError) as error:
        raise AnalysisError(f"the experiment's dataset cannot be loaded: {error}") from None


def _check_features(inputs: ResultsInput, features: FeatureSet) -> None:
    recorded = inputs.summary.get("feature_set")
    if recorded is not None and recorded != features.key:
        raise AnalysisError(
            f"{inputs.results_dir} was computed on other features ({recorded[:12]}) than its config now "
            f"yields ({features.key[:12]}): the dataset changed, so its front cannot be re-trained."
        )
    expected = inputs.config.head.mask_length(features.input_dim)
    if expected != inputs.mask_length:
        raise AnalysisError(
            f"{inputs.results_dir}: the front's masks have {inputs.mask_length} bits but the head on these "
            f"features needs {expected}."
        )


def _write_all(
    inputs: ResultsInput, features: FeatureSet, out: Path, top: int, samples: int, say: Log
) -> dict[str, Any]:
    from evoprune.workers.retrain import retrain

    config = inputs.config
    artifacts = _front_plots(inputs, out)
    say("counting neuron importance")
    importance, top_rows, meanings, order, frequencies = _importance(inputs, features, top, out)
    artifacts += importance
    say(f"re-training the {len(inputs.masks)} models of the aggregated front")
    # only the heads the heatmaps draw on keep their weights; logits are all the ensembles need
    models = retrain(features, config, inputs.masks, keep_weights=head_owners(inputs, meanings, order))
    reproduced = _reproduction(inputs.aggregate, models)
    say("drawing heatmaps")
    heatmap_artifacts, heatmaps = draw_heatmaps(inputs, meanings, order, frequencies, models, out, samples)
    artifacts += heatmap_artifacts
    say("building ensembles")
    ensemble_rows = _ensembles(inputs, features, models, out)
    artifacts += [
        artifact(
            "ensembles.parquet", "majority-vote ensembles per percentile window of the front's accuracy"
        ),
        artifact("ensembles.png", "member accuracy and AUROC per window, ensemble and best member marked"),
    ]
    artifacts.append(artifact(INDEX_NAME, "this index"))
    return {
        "format": ANALYSIS_FORMAT,
        "version": ANALYSIS_VERSION,
        "experiment": config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": config.head.mode,
        "backbone": config.backbone.name,
        "front": inputs.front_kind,
        "front_size": len(inputs.aggregate),
        "mask_length": inputs.mask_length,
        "reproduced": reproduced,
        "top": [
            {key: row[key] for key in ("rank", "bit", "label", "count", "frequency")} for row in top_rows
        ],
        "heatmaps": heatmaps,
        "ensembles": [
            {key: row[key] for key in _ENSEMBLE_SUMMARY_KEYS if key in row} for row in ensemble_rows
        ],
        "artifacts": artifacts,
    }


def _front_plots(inputs: ResultsInput, out: Path) -> list[dict[str, str]]:
    config = inputs.config
    name = config.name
    which = f"{inputs.front_kind} fronts"
    plot_front_3d(inputs.front, out / "front_3d.png", title=f"{name}: {which} (black: all runs)")
    plot_front_projections(
        inputs.front, out / "front_2d.png", title=f"{name}: 2-D projections of the {which}"
    )
    rows = _with_slots(inputs)
    runs = sorted({row["run"] for row in rows})
    histories = {run: hypervolume_history([row for row in rows if row["run"] == run]) for run in runs}
    # the aggregated archive after each synchronous round, on the same per-run evaluation axis
    aggregate = [(done / len(runs), volume) for done, volume in hypervolume_history(rows)]
    title = f"{name}: hypervolume of every run's archive front"
    plot_hypervolume(histories, out / "hypervolume_all.png", title, aggregate)
    return [
        artifact("front_3d.png", "3-D Pareto fronts, one colour per run, the aggregated front in black"),
        artifact("front_2d.png", "2-D projections of the fronts, one colour per run, aggregated in black"),
        artifact(
            "hypervolume_all.png",
            "archive-front hypervolume against evaluations of every run and of all runs together",
        ),
    ]


def _with_slots(inputs: ResultsInput) -> list[dict[str, Any]]:
    """Evaluation rows with the slot index `sort_rows` needs (their order in evaluations.parquet)."""
    return [{**row, "slot": index} for index, row in enumerate(inputs.evaluations)]


def _importance(
    inputs: ResultsInput, features: FeatureSet, top: int, out: Path
) -> tuple[list[dict[str, str]], list[dict[str, Any]], list[BitMeaning], list[int], np.ndarray]:
    from evoprune.workers.head_layout import head_shape

    config = inputs.config
    counts, frequencies = bit_frequencies(inputs.masks)
    order = [int(bit) for bit in top_bits(counts, top)]
    rank_of = {bit: rank for rank, bit in enumerate(order, start=1)}
    shape = head_shape(config.head, features.input_dim, features.num_classes)
    meanings = bit_meanings(shape)
    rows = []
    for meaning in meanings:
        users = [inputs.aggregate[i] for i in solutions_using(inputs.masks, meaning.bit)]
        row: dict[str, Any] = {
            "bit": meaning.bit,
            "segment": meaning.segment,
            "position": meaning.position,
            "unit": meaning.unit,
            "label": bit_label(meaning),
            "count": int(counts[meaning.bit]),
            "frequency": float(frequencies[meaning.bit]),
            "rank": rank_of.get(meaning.bit),
        }
        for name in OBJECTIVES:
            row[f"mean_{name}"] = float(np.mean([u[name] for u in users])) if users else None
        row["best_accuracy"] = max((u["accuracy"] for u in users), default=None)
        rows.append(row)
    _write_table(out / "importance.parquet", rows, IMPORTANCE_SCHEMA)
    solutions = [
        {"rank": rank_of[bit], "bit": bit, "label": rows[bit]["label"]}
        | {key: inputs.aggregate[i].get(key) for key in ("mask", *OBJECTIVES, *_test_columns(inputs))}
        for bit in order
        for i in solutions_using(inputs.masks, bit)
    ]
    _write_table(out / "importance_solutions.parquet", solutions, _solutions_schema(inputs))
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


def _test_columns(inputs: ResultsInput) -> tuple[str, ...]:
    return ("test_accuracy", "test_auroc") if inputs.config.fitness_split == "validation" else ()


_ENSEMBLE_SUMMARY_KEYS = (
    "window_lower",
    "window_upper",
    "members",
    "accuracy",
    "auroc",
    "best_accuracy",
    "best_auroc",
    "test_accuracy",
    "test_auroc",
)


def _ensembles(inputs: ResultsInput, features: FeatureSet, models: list, out: Path) -> list[dict[str, Any]]:
    from evoprune.workers.ensembles import window_ensembles

    config = inputs.config
    with_test = config.fitness_split == "validation"
    rows = []
    robustness = config.robustness
    for result in window_ensembles(
        models, features, robustness.temperature, estimator=robustness.auroc_estimator
    ):
        members = [models[m] for m in result.members]
        row: dict[str, Any] = {
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
            "best_mask": None if result.best_member is None else inputs.aggregate[result.best_member]["mask"],
            "best_accuracy": result.best_accuracy,
            "best_auroc": result.best_auroc,
        }
        if with_test:
            row |= {
                "test_accuracy": result.test_accuracy,
                "test_auroc": result.test_auroc,
                "best_test_accuracy": result.best_test_accuracy,
                "best_test_auroc": result.best_test_auroc,
            }
        rows.append(row)
    _write_table(out / "ensembles.parquet", rows, _ensembles_schema(with_test))
    plot_ensembles(rows, out / "ensembles.png", f"{config.name}: ensembles of the aggregated front")
    return rows


def _reproduction(front: list[dict[str, Any]], models: list) -> dict[str, Any]:
    """How closely the re-trained models reproduce the recorded objectives (exactly, on the same stack)."""
    accuracy_gaps = [
        abs(row["accuracy"] - model.evaluation.accuracy) for row, model in zip(front, models, strict=True)
    ]
    auroc_gaps = [
        abs(row["auroc"] - model.evaluation.auroc) for row, model in zip(front, models, strict=True)
    ]
    matching = sum(a == 0.0 and b == 0.0 for a, b in zip(accuracy_gaps, auroc_gaps, strict=True))
    return {
        "models": len(models),
        "exact": matching,
        "max_accuracy_difference": max(accuracy_gaps),
        "max_auroc_difference": max(auroc_gaps),
    }


def _write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)


_FLOAT = pa.float64()
IMPORTANCE_SCHEMA = pa.schema(
    [
        ("bit", pa.int32()),
        ("segment", pa.int32()),
        ("position", pa.int32()),
        ("unit", pa.int32()),
        ("label", pa.string()),
        ("count", pa.int32()),
        ("frequency", _FLOAT),
        ("rank", pa.int32()),
        ("mean_accuracy", _FLOAT),
        ("mean_active_fraction", _FLOAT),
        ("mean_auroc", _FLOAT),
        ("best_accuracy", _FLOAT),
    ]
)


def _solutions_schema(inputs: ResultsInput) -> pa.Schema:
    fields = [("rank", pa.int32()), ("bit", pa.int32()), ("label", pa.string()), ("mask", pa.string())]
    return pa.schema(fields + [(name, _FLOAT) for name in (*OBJECTIVES, *_test_columns(inputs))])


def _ensembles_schema(with_test: bool) -> pa.Schema:
    fields = [
        ("window_lower", pa.int32()),
        ("window_upper", pa.int32()),
        ("accuracy_low", _FLOAT),
        ("accuracy_high", _FLOAT),
        ("members", pa.int32()),
        ("member_masks", pa.list_(pa.string())),
        ("member_accuracies", pa.list_(_FLOAT)),
        ("member_aurocs", pa.list_(_FLOAT)),
        ("accuracy", _FLOAT),
        ("auroc", _FLOAT),
        ("best_mask", pa.string()),
        ("best_accuracy", _FLOAT),
        ("best_auroc", _FLOAT),
    ]
    if with_test:
        fields += [
            (name, _FLOAT)
            for name in ("test_accuracy", "test_auroc", "best_test_accuracy", "best_test_auroc")
        ]
    return pa.schema(fields)
