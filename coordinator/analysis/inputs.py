"""Reading a finished results directory for the analyses, refusing anything missing, unfinished or corrupt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import yaml

from evoprune.coordinator.results.fronts import (
    AGGREGATE_RUN,
    DEFAULT_KIND,
    FRONT_KINDS,
    FrontKind,
    FrontRecord,
)
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.writer import EVALUATION_COLUMNS, FRONT_COLUMNS, EvaluationRecord
from evoprune.shared.config import ConfigError, ExperimentConfig, parse_config
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.masks import MaskError, decode_mask
from evoprune.shared.parquet_files import read_verified_parquet
from evoprune.shared.sealed_json import read_sealed_json
from evoprune.shared.storage import StoragePath, storage_path

if TYPE_CHECKING:
    from evoprune.workers.features.feature_set import FeatureSet


class AnalysisError(Exception):
    """A results directory that cannot be analysed; the message says why and what to do."""


class ResultsUnreadableError(OSError):
    """The results directory's storage did not answer, or refused the credentials.

    An OSError, so that the service answers it as storage out of reach (503, try again) rather than as a
    directory that cannot be analysed; the command line names it as bad input.
    """


@dataclass(frozen=True)
class ResultsInput:
    """What the analyses read from a finished results directory."""

    results_dir: StoragePath
    config: ExperimentConfig
    summary: dict[str, Any]
    evaluations: list[EvaluationRecord]
    front: list[FrontRecord]  # every run's front of `front_kind` and the aggregated one (run = -1)
    aggregate: list[FrontRecord]  # the aggregated front, best accuracy first
    masks: np.ndarray  # (P, L) bools of the aggregated front, in `aggregate` order
    front_kind: str = DEFAULT_KIND  # "population" (the paper's fronts) or "archive"
    # every row of front.parquet, both kinds (a file from before fronts had kinds: archive rows, no `kind`)
    every_front: list[FrontRecord] | None = None

    @property
    def every_front_rows(self) -> list[FrontRecord]:
        """Both kinds of fronts, every run and the aggregate (picks choose among them)."""
        return self.every_front if self.every_front is not None else self.front

    @property
    def mask_length(self) -> int:
        return int(self.masks.shape[1])


def read_results(results_dir: StoragePath, front_kind: str = DEFAULT_KIND) -> ResultsInput:
    """Read and check a results directory written by `evoprune run`.

    Args:
        results_dir: the directory.
        front_kind: the fronts to read: "population" (each run's final population's non-dominated
            members, the paper's) or "archive" (the non-dominated set of all evaluations).

    Returns:
        Its config, summary, evaluations and fronts.

    Raises:
        AnalysisError: the directory is missing, the experiment has not finished, or a file is corrupt.
        ResultsUnreadableError: its object storage did not answer.

    """
    results_dir = storage_path(results_dir)
    if front_kind not in FRONT_KINDS:
        raise AnalysisError(f"front: {front_kind!r} is not one of {', '.join(FRONT_KINDS)}")
    try:
        is_dir = results_dir.is_dir()
    except OSError as error:  # object storage that does not answer, or refuses the credentials
        raise ResultsUnreadableError(f"cannot read {results_dir}: {' '.join(str(error).split())}") from None
    if not is_dir:
        raise AnalysisError(f"{results_dir} is not a directory; give the results directory of an experiment.")
    config = _read_config(results_dir)
    summary = _read_summary(results_dir)
    _check_finished(results_dir, summary.get("status"))
    layout = ResultsLayout(results_dir)
    # their columns checked by _read_table: the records' ("kind" may be missing, as FrontRecord allows)
    evaluations = cast(list[EvaluationRecord], _read_table(layout.evaluations, EVALUATION_COLUMNS))
    every_front = cast(
        list[FrontRecord], _read_table(layout.front, tuple(name for name in FRONT_COLUMNS if name != "kind"))
    )
    front = _of_kind(every_front, layout.front, front_kind)
    aggregate = [row for row in front if row["run"] == AGGREGATE_RUN]
    if not aggregate:
        raise AnalysisError(
            f"{layout.front} is corrupt: it holds no aggregated {front_kind} front (rows with run = -1)."
        )
    aggregate.sort(key=lambda r: (-r["accuracy"], r["active_fraction"], -r["auroc"], r["mask"]))
    lengths = {row["mask_length"] for row in aggregate}
    expected = summary.get("mask_length")
    if len(lengths) != 1 or (expected is not None and lengths != {expected}):
        raise AnalysisError(
            f"{layout.front} is corrupt: mask lengths {sorted(lengths)} disagree with "
            f"summary.json ({expected})."
        )
    length = lengths.pop()
    try:
        masks = np.stack([decode_mask(row["mask"], length) for row in aggregate])
    except MaskError as error:
        raise AnalysisError(f"{layout.front} is corrupt: {error}.") from None
    return ResultsInput(
        results_dir, config, summary, evaluations, front, aggregate, masks, front_kind, every_front
    )


def _of_kind(rows: list[FrontRecord], path: StoragePath, front_kind: str) -> list[FrontRecord]:
    """The rows of one kind of front; a front.parquet from before fronts had kinds holds archives only."""
    if rows and "kind" not in rows[0]:
        if front_kind != FrontKind.ARCHIVE:
            raise AnalysisError(
                f"{path} was written before population fronts were kept: it holds archive fronts only; "
                "analyse those with --front archive."
            )
        return rows
    return [row for row in rows if row["kind"] == front_kind]


def _read_config(results_dir: StoragePath) -> ExperimentConfig:
    path = ResultsLayout(results_dir).config
    try:
        return parse_config(yaml.safe_load(path.read_text()), str(path))
    except FileNotFoundError:
        raise AnalysisError(
            f"{results_dir} has no config.yaml: it is not an evoprune results directory."
        ) from None
    except (OSError, yaml.YAMLError, ConfigError) as error:
        raise AnalysisError(f"{results_dir} is corrupt: its config.yaml cannot be read ({error}).") from None


def _read_summary(results_dir: StoragePath) -> dict[str, Any]:
    path = ResultsLayout(results_dir).summary
    try:
        summary = read_sealed_json(path)  # its seal checked; one written before seals is read as it is
    except FileNotFoundError:
        raise AnalysisError(
            f"{results_dir} has no summary.json: the experiment has not finished. "
            f"Continue it with `evoprune resume {results_dir}`."
        ) from None
    except (OSError, ValueError) as error:
        raise AnalysisError(f"{results_dir} is corrupt: its summary.json cannot be read ({error}).") from None
    if not isinstance(summary, dict):
        raise AnalysisError(f"{results_dir} is corrupt: its summary.json is not a JSON object.")
    return summary


def _check_finished(results_dir: StoragePath, status: str | None) -> None:
    """Refuse an experiment whose summary.json `status` (or whose checkpoint) says it has not finished."""
    checkpoint_path = ResultsLayout(results_dir).checkpoint
    checkpoint_status = None
    if checkpoint_path.exists():
        try:
            checkpoint_status = json.loads(checkpoint_path.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            checkpoint_status = "unreadable"
    if status != ExperimentStatus.SUCCEEDED or checkpoint_status not in (None, ExperimentStatus.SUCCEEDED):
        raise AnalysisError(
            f"{results_dir} holds an experiment that has not finished (status {status!r}); analyse it once "
            f"it has: `evoprune resume {results_dir}` continues it."
        )


def _read_table(path: StoragePath, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        table = read_verified_parquet(path)
    except FileNotFoundError:
        raise AnalysisError(f"{path.parent} is corrupt: {path.name} is missing.") from None
    except (OSError, pa.ArrowException) as error:
        raise AnalysisError(f"{path} is corrupt and cannot be read ({error}).") from None
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise AnalysisError(f"{path} is corrupt: column(s) {', '.join(missing)} missing.")
    if table.num_rows == 0:
        raise AnalysisError(f"{path} is corrupt: it holds no rows.")
    return table.to_pylist()


def load_features(inputs: ResultsInput, progress: bool) -> FeatureSet:
    """The experiment's features, from the feature cache or extracted again (analyses and exports).

    Raises:
        AnalysisError: the dataset cannot be loaded; the message names the source.

    """
    from evoprune.workers.features.assemble import (
        load_feature_set,  # TensorFlow and datasets: loaded when used
    )

    try:
        return load_feature_set(inputs.config, progress=progress)
    except (ValueError, OSError) as error:
        raise AnalysisError(f"the experiment's dataset cannot be loaded: {error}") from None


def check_features(inputs: ResultsInput, features: FeatureSet) -> None:
    """Refuse features other than those the experiment was computed on, or a head of another width.

    Raises:
        AnalysisError: the dataset changed, or the masks do not fit the head on these features.

    """
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
