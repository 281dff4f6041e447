"""Exports of the HTTP service: `evoprune export` in a detached Ray actor that keeps its status current."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray

from evoprune.coordinator.placement import on_results_node
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.coordinator.service.actors import BackgroundJob
from evoprune.coordinator.service.analysis_status import AnalysisStatus, read_status_file, write_status_file

log = logging.getLogger(__name__)


class ExportBusyError(Exception):
    """An export of this experiment is already running (its actor exists)."""


@dataclass(frozen=True)
class ExportSpec:
    """What one export needs, picklable: the experiment, its results, and the pick (or the mask)."""

    experiment_id: str
    results_dir: str
    name: str  # the folder under exports/, chosen when the request was checked
    mask: str | None = None
    rule: str | None = None
    min_accuracy: float | None = None
    run: int = -1
    kind: str = "population"

    def options(self) -> dict[str, Any]:
        """The request's options, as the status file reports them."""
        fields = asdict(self)
        return {key: fields[key] for key in ("mask", "rule", "min_accuracy", "run", "kind")}


def read_export_status(results_dir: Path) -> dict[str, Any] | None:
    """The export status file of a results directory, or None when there is none (or it is unreadable)."""
    return read_status_file(ResultsLayout(Path(results_dir)).export_status)


def write_export_status(results_dir: Path, state: dict[str, Any]) -> None:
    """Replace the export status file atomically."""
    write_status_file(ResultsLayout(Path(results_dir)).export_status, state)


def run_export(spec: ExportSpec, export: Callable[..., dict[str, Any]] | None = None) -> AnalysisStatus:
    """Export one front member of a finished experiment, keeping its status file current.

    Args:
        spec: which results directory, and the pick.
        export: `coordinator.export.export_model` or a stand-in with its signature (tests).

    Returns:
        The final status: succeeded or failed.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results_dir = Path(spec.results_dir)
    previous = read_export_status(results_dir) or {}
    base = {
        "requested_at": previous.get("requested_at", time.time()),
        "started_at": time.time(),
        "name": spec.name,
        "options": spec.options(),
    }

    def report(**fields: Any) -> None:
        try:
            write_export_status(results_dir, {**base, **fields})
        except OSError as error:  # the model is still written (or not); say why its status is not
            log.error("cannot write %s: %s", ResultsLayout(results_dir).export_status, error)

    report(status=AnalysisStatus.RUNNING.value, stage="starting")
    try:
        work = export if export is not None else _export()
        written = work(
            results_dir,
            mask=spec.mask,
            rule=spec.rule,
            min_accuracy=spec.min_accuracy,
            run=spec.run,
            kind=spec.kind,
            log=lambda line: report(status=AnalysisStatus.RUNNING.value, stage=line),
        )
    except Exception as error:
        log.error("export of %s failed:\n%s", spec.experiment_id, traceback.format_exc())
        report(
            status=AnalysisStatus.FAILED.value,
            error=" ".join(f"{type(error).__name__}: {error}".split()),
            finished_at=time.time(),
        )
        return AnalysisStatus.FAILED
    report(
        status=AnalysisStatus.SUCCEEDED.value,
        finished_at=time.time(),
        objectives=written.get("objectives"),
        mask=written.get("mask"),
    )
    return AnalysisStatus.SUCCEEDED


def _export() -> Callable[..., dict[str, Any]]:
    # imported here: building the model pulls in TensorFlow, which only the actor's process should load
    from evoprune.coordinator.export import export_model

    return export_model


class ExportRunner(BackgroundJob):
    """The body of the detached Ray actor that runs one export (see `EXPORT_ACTOR`)."""

    def __init__(self, spec: ExportSpec) -> None:
        self.spec = spec
        super().__init__(f"export-{spec.experiment_id}", lambda: run_export(spec), AnalysisStatus.RUNNING)


# It re-trains the head from the cached features, reads the images again to check the written model, and
# writes exports/ in the results directory: the node that mounts them. No restarts: a crashed export is
# reported failed and can simply be asked for again.
EXPORT_ACTOR = ray.remote(**on_results_node(), max_restarts=0, max_task_retries=0)(ExportRunner)
