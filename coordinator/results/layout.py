"""Where each file of an experiment's results directory lives: the one place that names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from evoprune.shared.storage import StoragePath, storage_path

# a local directory gives local paths and a prefix on object storage gives object paths, so code that only
# ever handles local directories (the service's own files) keeps plain `Path`s
PathT = TypeVar("PathT", bound=StoragePath)

ANALYSIS_DIR = "analysis"
# the index `evoprune analyze` writes last into analysis/: the artifacts it made and what they show
ANALYSIS_INDEX_NAME = "analysis.json"
# a new analysis is written here and swapped in whole, so readers never see half of one
ANALYSIS_STAGING_DIR = ".analysis.partial"
ANALYSIS_PREVIOUS_DIR = ".analysis.previous"
# exports/NAME/ holds one exported model (written by `evoprune export`): model.keras and export.json
EXPORTS_DIR = "exports"
EXPORT_MODEL_NAME = "model.keras"
EXPORT_REPORT_NAME = "export.json"


@dataclass(frozen=True)
class ResultsLayout(Generic[PathT]):
    """The paths of one results directory: the run's files, its state, analysis/ and exports/."""

    root: PathT

    def _at(self, *parts: str) -> PathT:
        # joining keeps the kind of path (a Path gives Paths, an ObjectPath ObjectPaths), which mypy
        # cannot follow through the union's `/`
        path: StoragePath = self.root
        for part in parts:
            path = path / part
        return cast(PathT, path)

    @property
    def config(self) -> PathT:
        """The fully resolved config (YAML)."""
        return self._at("config.yaml")

    @property
    def evaluations(self) -> PathT:
        """One row per evaluation (Parquet)."""
        return self._at("evaluations.parquet")

    @property
    def front(self) -> PathT:
        """Per-run and aggregated fronts (Parquet)."""
        return self._at("front.parquet")

    @property
    def summary(self) -> PathT:
        """Hypervolumes, counts, wall time, versions (JSON)."""
        return self._at("summary.json")

    @property
    def front_plot(self) -> PathT:
        """The 3-D fronts and their projections (PNG)."""
        return self._at("front.png")

    @property
    def hypervolume_plot(self) -> PathT:
        """Hypervolume against evaluations (PNG)."""
        return self._at("hypervolume.png")

    @property
    def checkpoint(self) -> PathT:
        """The search state after the last completed step (JSON, replaced atomically)."""
        return self._at("state", "checkpoint.json")

    @property
    def journal(self) -> PathT:
        """Every completed step's rows, appended (JSON lines); the checkpoint says how many are valid."""
        return self._at("state", "journal.jsonl")

    @property
    def ledger(self) -> PathT:
        """What this experiment trained itself (JSON lines), so a resume never trains a mask twice."""
        return self._at("state", "trained.jsonl")

    @property
    def tracking(self) -> PathT:
        """The MLflow runs the experiment reports to (JSON), so that a resumed experiment continues them."""
        return self._at("state", "tracking.json")

    @property
    def record_copy(self) -> PathT:
        """The service's final record and fronts, for a store that lost them (JSON)."""
        return self._at("service-state.json")

    @property
    def analysis_status(self) -> PathT:
        """Where the service's analysis of the experiment stands (JSON).

        Beside the analysis folder, not in it: publishing a new analysis swaps that folder whole.
        """
        return self._at("analysis-status.json")

    @property
    def export_status(self) -> PathT:
        """Where the service's latest export of a front member stands (JSON); the models are in exports/."""
        return self._at("export-status.json")

    @property
    def analysis(self) -> PathT:
        """The published analysis (`evoprune analyze`): plots, tables and their index."""
        return self._at(ANALYSIS_DIR)

    @property
    def analysis_index(self) -> PathT:
        """The published analysis's index (JSON): its artifacts, top neurons, heatmaps, ensembles."""
        return self._at(ANALYSIS_DIR, ANALYSIS_INDEX_NAME)

    @property
    def analysis_staging(self) -> PathT:
        """Where an analysis in progress is written before it replaces analysis/."""
        return self._at(ANALYSIS_STAGING_DIR)

    @property
    def analysis_previous(self) -> PathT:
        """Where the replaced analysis waits, for the moment of the swap, to be removed."""
        return self._at(ANALYSIS_PREVIOUS_DIR)

    @property
    def exports(self) -> PathT:
        """The exported models, one folder each (`evoprune export`)."""
        return self._at(EXPORTS_DIR)

    def export_model(self, name: str) -> PathT:
        """The .keras model of the export called `name`."""
        return self._at(EXPORTS_DIR, name, EXPORT_MODEL_NAME)

    def export_report(self, name: str) -> PathT:
        """What the export called `name` measured (JSON), written after its reload check."""
        return self._at(EXPORTS_DIR, name, EXPORT_REPORT_NAME)


def results_layout(results_dir: str) -> ResultsLayout[StoragePath]:
    """The layout of a results directory a record names: a local folder or an s3:// (gs://) prefix.

    Args:
        results_dir: the path or URI, as `ExperimentRecord.results_dir` holds it.

    Returns:
        Its layout.

    """
    return ResultsLayout(storage_path(results_dir))
