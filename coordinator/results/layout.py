"""Where each file of an experiment's results directory lives: the one place that names them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
class ResultsLayout:
    """The paths of one results directory: the run's files, its state, analysis/ and exports/."""

    root: Path

    @property
    def config(self) -> Path:
        """The fully resolved config (YAML)."""
        return self.root / "config.yaml"

    @property
    def evaluations(self) -> Path:
        """One row per evaluation (Parquet)."""
        return self.root / "evaluations.parquet"

    @property
    def front(self) -> Path:
        """Per-run and aggregated fronts (Parquet)."""
        return self.root / "front.parquet"

    @property
    def summary(self) -> Path:
        """Hypervolumes, counts, wall time, versions (JSON)."""
        return self.root / "summary.json"

    @property
    def front_plot(self) -> Path:
        """The 3-D fronts and their projections (PNG)."""
        return self.root / "front.png"

    @property
    def hypervolume_plot(self) -> Path:
        """Hypervolume against evaluations (PNG)."""
        return self.root / "hypervolume.png"

    @property
    def checkpoint(self) -> Path:
        """The search state after the last completed step (JSON, replaced atomically)."""
        return self.root / "state" / "checkpoint.json"

    @property
    def journal(self) -> Path:
        """Every completed step's rows, appended (JSON lines); the checkpoint says how many are valid."""
        return self.root / "state" / "journal.jsonl"

    @property
    def ledger(self) -> Path:
        """What this experiment trained itself (JSON lines), so a resume never trains a mask twice."""
        return self.root / "state" / "trained.jsonl"

    @property
    def record_copy(self) -> Path:
        """The service's final record and fronts, for a store that lost them (JSON)."""
        return self.root / "service-state.json"

    @property
    def analysis_status(self) -> Path:
        """Where the service's analysis of the experiment stands (JSON).

        Beside the analysis folder, not in it: publishing a new analysis swaps that folder whole.
        """
        return self.root / "analysis-status.json"

    @property
    def export_status(self) -> Path:
        """Where the service's latest export of a front member stands (JSON); the models are in exports/."""
        return self.root / "export-status.json"

    @property
    def analysis(self) -> Path:
        """The published analysis (`evoprune analyze`): plots, tables and their index."""
        return self.root / ANALYSIS_DIR

    @property
    def analysis_index(self) -> Path:
        """The published analysis's index (JSON): its artifacts, top neurons, heatmaps, ensembles."""
        return self.analysis / ANALYSIS_INDEX_NAME

    @property
    def analysis_staging(self) -> Path:
        """Where an analysis in progress is written before it replaces analysis/."""
        return self.root / ANALYSIS_STAGING_DIR

    @property
    def analysis_previous(self) -> Path:
        """Where the replaced analysis waits, for the moment of the swap, to be removed."""
        return self.root / ANALYSIS_PREVIOUS_DIR

    @property
    def exports(self) -> Path:
        """The exported models, one folder each (`evoprune export`)."""
        return self.root / EXPORTS_DIR

    def export_model(self, name: str) -> Path:
        """The .keras model of the export called `name`."""
        return self.exports / name / EXPORT_MODEL_NAME

    def export_report(self, name: str) -> Path:
        """What the export called `name` measured (JSON), written after its reload check."""
        return self.exports / name / EXPORT_REPORT_NAME
