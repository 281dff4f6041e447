"""Asking the service to export a front member: the checks, the status file and the actor, in order."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoprune.coordinator.export import ExportError, choose, export_name
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.coordinator.service.analysis_status import LOST_AFTER_S, AnalysisStatus
from evoprune.coordinator.service.export_launch import (
    ExportBusyError,
    ExportSpec,
    read_export_status,
    write_export_status,
)
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.picks import AGGREGATE_RUN, DEFAULT_KIND
from evoprune.shared.store import ExperimentRecord

log = logging.getLogger(__name__)
WAITING_STAGE = "waiting for its actor on the Ray node that holds the results"
# one start at a time in this process, so two requests cannot both find no export running
_starting = threading.Lock()


class ExportRefusedError(Exception):
    """The experiment cannot be exported now (not succeeded, or an export is running)."""


class ExportInvalidError(Exception):
    """The request names no exportable member; `field` is the option at fault."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class ExportUnavailableError(Exception):
    """The export could not be started: its results directory or the Ray cluster failed."""


@dataclass(frozen=True)
class ExportRequest:
    """The options of one export, as `evoprune export` takes them."""

    mask: str | None = None
    rule: str | None = None
    min_accuracy: float | None = None
    run: int = AGGREGATE_RUN
    kind: str = DEFAULT_KIND


def current_export(record: ExperimentRecord, launcher: Launcher, now: float | None = None) -> dict[str, Any]:
    """Where the latest export of an experiment stands: its status file, or `{"status": "none"}`.

    A running export whose actor has been gone for a while (its process or node died) is reported failed.

    Args:
        record: the experiment.
        launcher: asked whether the export actor still exists.
        now: the current time (tests); default time.time().

    Returns:
        The status file's fields: status, stage, error, name, options, requested/started/finished times.

    """
    data = read_export_status(Path(record.results_dir))
    if data is None:
        return {"status": AnalysisStatus.NONE.value}
    if data["status"] != AnalysisStatus.RUNNING.value:
        return data
    since = data.get("requested_at") or data.get("started_at") or 0.0
    if (time.time() if now is None else now) - float(since) < LOST_AFTER_S:
        return data
    try:
        alive = launcher.export_alive(record.id)
    except Exception:  # Ray unreachable: nothing says the actor died, so it is still running
        alive = True
    if alive:
        return data
    return {
        **data,
        "status": AnalysisStatus.FAILED.value,
        "stage": None,
        "error": "the export stopped without finishing: its Ray actor is gone (the process or its node "
        "died); start it again",
    }


def request_export(record: ExperimentRecord, launcher: Launcher, request: ExportRequest) -> dict[str, Any]:
    """Check an export request against the experiment's results, then start it in a detached Ray actor.

    The member is chosen here, from the results files (no TensorFlow), so that a bad request is answered
    at once; the actor re-trains it and writes exports/NAME/model.keras and export.json.

    Args:
        record: the experiment.
        launcher: starts the export actor.
        request: the pick (or the mask).

    Returns:
        The export's status just after the request.

    Raises:
        ExportRefusedError: the experiment has not succeeded, or one of its exports is running.
        ExportInvalidError: no such run or kind, a malformed or unknown mask, no member qualifies.
        ExportUnavailableError: the results directory cannot be written, or Ray refused the actor.

    """
    if record.status != ExperimentStatus.SUCCEEDED:
        raise ExportRefusedError(
            f"experiment {record.id} is {record.status}; only a succeeded experiment can be exported"
        )
    results_dir = Path(record.results_dir)
    try:
        _, choice = choose(
            results_dir,
            mask=request.mask,
            rule=request.rule,
            min_accuracy=request.min_accuracy,
            run=request.run,
            kind=request.kind,
        )
    except ExportError as error:
        raise ExportInvalidError(" ".join(str(error).split()), error.field) from None
    spec = ExportSpec(
        experiment_id=record.id,
        results_dir=str(results_dir),
        name=export_name(choice),
        mask=request.mask,
        rule=request.rule,
        min_accuracy=request.min_accuracy,
        run=request.run,
        kind=request.kind,
    )
    with _starting:
        if current_export(record, launcher)["status"] == AnalysisStatus.RUNNING.value:
            raise ExportRefusedError(f"an export of experiment {record.id} is already running; wait for it")
        previous = read_export_status(results_dir)
        waiting = {
            "status": AnalysisStatus.RUNNING.value,
            "stage": WAITING_STAGE,
            "requested_at": time.time(),
            "name": spec.name,
            "options": spec.options(),
        }
        try:
            write_export_status(results_dir, waiting)
        except OSError as error:
            raise ExportUnavailableError(
                f"the results directory of experiment {record.id} cannot be written: {error}"
            ) from None
        try:
            launcher.launch_export(spec)
        except ExportBusyError:
            _restore(results_dir, previous)
            raise ExportRefusedError(
                f"an export of experiment {record.id} is still finishing; try again in a few seconds"
            ) from None
        except Exception as error:  # whatever Ray raised: the export is failed, the client is told
            log.exception("the export of experiment %s could not be started", record.id)
            message = f"the export could not be started on Ray: {type(error).__name__}: {error}"
            write_export_status(
                results_dir,
                {
                    **waiting,
                    "status": AnalysisStatus.FAILED.value,
                    "error": message,
                    "finished_at": time.time(),
                },
            )
            raise ExportUnavailableError(message) from None
    return current_export(record, launcher)


def _restore(results_dir: Path, previous: dict[str, Any] | None) -> None:
    if previous is None:
        ResultsLayout(results_dir).export_status.unlink(missing_ok=True)
    else:
        write_export_status(results_dir, previous)
