"""An experiment's results directory: its layout, its identity, and whether it may be run or resumed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evoprune.coordinator.checkpoint import CheckpointError, read_json
from evoprune.shared.config import ConfigError, ExperimentConfig, parse_config
from evoprune.shared.events import ExperimentStatus

CHECKPOINT_FORMAT = "evoprune-experiment"
CHECKPOINT_VERSION = 1


class ExperimentError(Exception):
    """A problem the user can fix (a results directory in the wrong state); the message says how."""


def experiment_fingerprint(config: ExperimentConfig) -> str:
    """Hash the whole resolved config: two directories with the same one hold the same experiment.

    Fields added since directories were first written count only off their defaults
    (`ExperimentConfig.stable_dump`), so an older directory keeps its fingerprint and still resumes.
    """
    text = json.dumps(config.stable_dump(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ResultsLayout:
    """Where each file of a results directory lives: the one place that names them.

    The analysis folder's own files are named by `coordinator.analysis.artifacts`, which writes them.
    """

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


def check_new_results_dir(results_dir: Path, config: ExperimentConfig) -> None:
    """Refuses a directory that `evoprune run` must not write into.

    Args:
        results_dir: where the experiment would write.
        config: the experiment to run.

    Raises:
        ExperimentError: the directory holds anything else; nothing is touched.

    """
    if not results_dir.exists():
        return
    if not results_dir.is_dir():
        raise ExperimentError(f"{results_dir} exists and is not a directory; choose another --out.")
    if not any(results_dir.iterdir()):
        return
    layout = ResultsLayout(results_dir)
    if not layout.config.exists() and not layout.checkpoint.exists():
        raise ExperimentError(
            f"{results_dir} is not empty and is not an evoprune results directory; "
            "choose an empty or new directory with --out."
        )
    try:
        checkpoint = read_json(layout.checkpoint)
    except CheckpointError:
        checkpoint = None
    if checkpoint is None or checkpoint.get("fingerprint") != experiment_fingerprint(config):
        raise ExperimentError(
            f"{results_dir} belongs to another experiment (its config.yaml differs from this one); "
            "nothing was overwritten. Choose another --out."
        )
    if checkpoint.get("status") == ExperimentStatus.SUCCEEDED:
        raise ExperimentError(
            f"{results_dir} already holds the finished results of this experiment; nothing was overwritten. "
            "Choose another --out to run it again."
        )
    raise ExperimentError(
        f"{results_dir} holds an unfinished run of this experiment; continue it with "
        f"`evoprune resume {results_dir}` or choose another --out."
    )


def load_resumable(results_dir: Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """Read the config and checkpoint of an interrupted experiment.

    Args:
        results_dir: the results directory given to `evoprune resume`.

    Returns:
        (config, checkpoint).

    Raises:
        ExperimentError: missing, finished, or corrupt; nothing is touched.

    """
    layout = ResultsLayout(results_dir)
    if not results_dir.is_dir():
        raise ExperimentError(
            f"{results_dir} is not a directory; give the results directory of an experiment."
        )
    try:
        config = parse_config(yaml.safe_load(layout.config.read_text()), str(layout.config))
    except FileNotFoundError:
        raise ExperimentError(
            f"{results_dir} has no config.yaml: it is not an evoprune results directory."
        ) from None
    except (OSError, yaml.YAMLError, ConfigError) as error:
        raise ExperimentError(
            f"{results_dir} is corrupt: its config.yaml cannot be read ({error})."
        ) from None
    try:
        checkpoint = read_json(layout.checkpoint)
        if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError("not a checkpoint of this evoprune version")
        if checkpoint.get("fingerprint") != experiment_fingerprint(config):
            raise CheckpointError("the checkpoint belongs to a different config than config.yaml")
        for name in ("rows", "runs", "feature_key", "mask_length", "status"):
            if name not in checkpoint:
                raise CheckpointError(f"the checkpoint lacks {name!r}")
    except CheckpointError as error:
        raise ExperimentError(f"{results_dir} is corrupt and cannot be resumed: {error}.") from None
    if checkpoint["status"] == ExperimentStatus.SUCCEEDED:
        raise ExperimentError(f"{results_dir} is already finished; there is nothing to resume.")
    return config, checkpoint
