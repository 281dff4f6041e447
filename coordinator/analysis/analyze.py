"""`evoprune analyze`: aggregated fronts, neuron importance, heatmaps and ensembles of an experiment."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from evoprune.coordinator.analysis.ensembles import ENSEMBLE_SUMMARY_KEYS, ensemble_table
from evoprune.coordinator.analysis.heatmaps import HeatmapsInfo, draw_heatmaps, head_owners
from evoprune.coordinator.analysis.importance import neuron_importance
from evoprune.coordinator.analysis.inputs import (
    AnalysisError,
    ResultsInput,
    check_features,
    load_features,
    read_results,
)
from evoprune.coordinator.results.artifacts import artifact, discard, fresh_staging, publish
from evoprune.coordinator.results.fronts import DEFAULT_KIND, FrontRecord
from evoprune.coordinator.results.layout import ANALYSIS_DIR, ANALYSIS_INDEX_NAME
from evoprune.coordinator.results.plots import plot_front_3d, plot_front_projections, plot_hypervolume
from evoprune.coordinator.results.writer import EvaluationRecord, hypervolume_history
from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.storage import ObjectPath, storage_path, upload_folder
from evoprune.workers.analysis.importance import (
    DEFAULT_TOP,
)
from evoprune.workers.features.feature_set import FeatureSet

ANALYSIS_FORMAT = "evoprune-analysis"
ANALYSIS_VERSION = 1
DEFAULT_SAMPLES = 4
Log = Callable[[str], None]


class Reproduction(TypedDict):
    """How closely the re-trained models reproduce the recorded objectives."""

    models: int
    exact: int  # models whose accuracy and AUROC equal the recorded ones
    max_accuracy_difference: float
    max_auroc_difference: float


class TopNeuron(TypedDict):
    """A top neuron as analysis.json lists it (the head of its importance.parquet row)."""

    rank: int | None
    bit: int
    label: str
    count: int
    frequency: float


class AnalysisIndex(TypedDict):
    """analysis/analysis.json: what was analysed, the headline findings, and every file written."""

    format: str
    version: int
    experiment: str
    created: str
    mode: str
    backbone: str
    front: str
    front_size: int
    mask_length: int
    reproduced: Reproduction
    top: list[TopNeuron]
    heatmaps: HeatmapsInfo
    ensembles: list[dict[str, Any]]  # `ENSEMBLE_SUMMARY_KEYS` of each ensemble row
    artifacts: list[dict[str, str]]
    seconds: float


def analyze(
    results_dir: str | Path | ObjectPath,
    *,
    top: int = DEFAULT_TOP,
    samples: int = DEFAULT_SAMPLES,
    feature_set: FeatureSet | None = None,
    log: Log | None = None,
    front: str = DEFAULT_KIND,
) -> AnalysisIndex:
    """Run every analysis of a finished experiment and write them to results_dir/analysis/.

    The new analysis is written beside the old one and swapped in only when complete, so a failure
    leaves the previous analysis as it was. On object storage it is drawn locally and uploaded with its
    index last, so a reader following the index never meets a missing file.

    Args:
        results_dir: the experiment's results directory: a local path, or an s3:// or gs:// URI.
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
    try:
        results_dir = storage_path(results_dir)
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    inputs = read_results(results_dir, front)
    if feature_set is None:
        say("loading the experiment's features (extracted again if the feature cache lost them)")
    features = feature_set if feature_set is not None else load_features(inputs, progress=log is not None)
    check_features(inputs, features)
    if isinstance(results_dir, ObjectPath):
        # drawn in a local folder, then uploaded with the index last (object storage has no rename)
        with tempfile.TemporaryDirectory(prefix="evoprune-analysis-") as workspace:
            staging = Path(workspace)
            index = _write_all(inputs, features, staging, top, samples, say, started)
            say(f"uploading the analysis to {results_dir / ANALYSIS_DIR}")
            upload_folder(staging, results_dir / ANALYSIS_DIR, last=ANALYSIS_INDEX_NAME)
        return index
    local_dir = Path(results_dir)
    staging = fresh_staging(local_dir)
    try:
        index = _write_all(inputs, features, staging, top, samples, say, started)
        publish(local_dir, staging)
    except BaseException:
        discard(staging)
        raise
    return index


def _write_all(
    inputs: ResultsInput, features: FeatureSet, out: Path, top: int, samples: int, say: Log, started: float
) -> AnalysisIndex:
    """Every analysis written into `out`, then the index that lists them (last); returns the index."""
    from evoprune.workers.evaluation.retrain import retrain

    config = inputs.config
    artifacts = _front_plots(inputs, out)
    say("counting neuron importance")
    importance, top_rows, meanings, order, frequencies = neuron_importance(inputs, features, top, out)
    artifacts += importance
    say(f"re-training the {len(inputs.masks)} models of the aggregated front")
    # only the heads the heatmaps draw on keep their weights; logits are all the ensembles need
    models = retrain(features, config, inputs.masks, keep_weights=head_owners(inputs, meanings, order))
    reproduced = _reproduction(inputs.aggregate, models)
    say("drawing heatmaps")
    heatmap_artifacts, heatmaps = draw_heatmaps(inputs, meanings, order, frequencies, models, out, samples)
    artifacts += heatmap_artifacts
    say("building ensembles")
    ensemble_rows = ensemble_table(inputs, features, models, out)
    artifacts += [
        artifact(
            "ensembles.parquet",
            "ensembles per percentile window of the front's accuracy, combined by majority vote (accuracy) "
            "and by mean softmax (softmax_accuracy, what an exported ensemble reproduces)",
        ),
        artifact("ensembles.png", "member accuracy and AUROC per window, ensemble and best member marked"),
    ]
    artifacts.append(artifact(ANALYSIS_INDEX_NAME, "this index"))
    index: AnalysisIndex = {
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
            {
                "rank": row["rank"],
                "bit": row["bit"],
                "label": row["label"],
                "count": row["count"],
                "frequency": row["frequency"],
            }
            for row in top_rows
        ],
        "heatmaps": heatmaps,
        "ensembles": [
            {key: row[key] for key in ENSEMBLE_SUMMARY_KEYS if key in row} for row in ensemble_rows
        ],
        "artifacts": artifacts,
        # the time it all took, the index's own writing aside
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_atomic(out / ANALYSIS_INDEX_NAME, json.dumps(index, indent=2))
    return index


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


def _with_slots(inputs: ResultsInput) -> list[EvaluationRecord]:
    """Evaluation rows with the slot index `sort_rows` needs (their order in evaluations.parquet)."""
    return [{**row, "slot": index} for index, row in enumerate(inputs.evaluations)]


def _reproduction(front: list[FrontRecord], models: list) -> Reproduction:
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
