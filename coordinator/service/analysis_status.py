"""Where the service's analysis of an experiment stands: a small status file beside its analysis folder."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoprune.coordinator.analysis.artifacts import ANALYSIS_DIR, INDEX_NAME
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.shared.atomic_files import write_atomic

# A "running" status whose actor cannot be found is only declared lost after this long: the API writes the
# status just before it creates the actor, and a reader may look in between.
LOST_AFTER_S = 60.0
WAITING_STAGE = "waiting for its actor on the Ray node that holds the results"


class AnalysisStatus(enum.StrEnum):
    """The states of an experiment's analysis, as the status file and the API name them."""

    NONE = "none"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class AnalysisState:
    """Where the analysis of an experiment stands, as the API reports it."""

    status: AnalysisStatus
    error: str | None = None
    stage: str | None = None  # what a running analysis is doing
    requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    top: int | None = None
    samples: int | None = None


def read_status_file(path: Path) -> dict[str, Any] | None:
    """A job's status file (analysis or export), or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in set(AnalysisStatus) else None


def write_status_file(path: Path, state: dict[str, Any]) -> None:
    """Replace a job's status file atomically (readers see the old or the new one, never a mix)."""
    write_atomic(path, json.dumps(state))


def read_status(results_dir: Path) -> dict[str, Any] | None:
    """The analysis status file of a results directory, or None when there is none (or it is unreadable)."""
    return read_status_file(ResultsLayout(Path(results_dir)).analysis_status)


def write_status(results_dir: Path, state: dict[str, Any]) -> None:
    """Replace the analysis status file atomically."""
    write_status_file(ResultsLayout(Path(results_dir)).analysis_status, state)


def analysis_state(results_dir: Path, alive: Callable[[], bool], now: float | None = None) -> AnalysisState:
    """Decide where an experiment's analysis stands from its files and whether its actor exists.

    Args:
        results_dir: the experiment's results directory.
        alive: whether the analysis actor exists; only asked about a status that says running.
        now: the current time (tests); default time.time().

    Returns:
        running/succeeded/failed as the status file says, except that a running analysis whose actor has
        been gone for a while (its process died) is failed; with no status file, succeeded when
        analysis/analysis.json exists (written by `evoprune analyze`), else none.

    """
    results_dir = Path(results_dir)
    data = read_status(results_dir)
    if data is None:
        indexed = (results_dir / ANALYSIS_DIR / INDEX_NAME).is_file()
        return AnalysisState(status=AnalysisStatus.SUCCEEDED if indexed else AnalysisStatus.NONE)
    state = AnalysisState(
        status=AnalysisStatus(data["status"]),
        error=_text(data.get("error")),
        stage=_text(data.get("stage")),
        requested_at=_number(data.get("requested_at")),
        started_at=_number(data.get("started_at")),
        finished_at=_number(data.get("finished_at")),
        top=_integer(data.get("top")),
        samples=_integer(data.get("samples")),
    )
    if state.status != AnalysisStatus.RUNNING:
        return state
    since = state.requested_at if state.requested_at is not None else state.started_at
    current = time.time() if now is None else now
    if since is not None and current - since < LOST_AFTER_S:
        return state
    if alive():
        return state
    return AnalysisState(
        status=AnalysisStatus.FAILED,
        error="the analysis stopped without finishing: its Ray actor is gone (the process or its node "
        "died); start it again",
        requested_at=state.requested_at,
        started_at=state.started_at,
        top=state.top,
        samples=state.samples,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mark_requested(results_dir: Path, top: int, samples: int, now: float | None = None) -> dict[str, Any]:
    """Write the status of an analysis about to be started; its actor takes over from there.

    Args:
        results_dir: the experiment's results directory.
        top: the analysis's option (reported back with the status).
        samples: the analysis's option (reported back with the status).
        now: the request time (tests); default time.time().

    Returns:
        The status written.

    """
    state = {
        "status": AnalysisStatus.RUNNING.value,
        "stage": WAITING_STAGE,
        "requested_at": time.time() if now is None else now,
        "top": top,
        "samples": samples,
    }
    write_status(Path(results_dir), state)
    return state


def restore_status(results_dir: Path, previous: dict[str, Any] | None) -> None:
    """Put back the status file as it was before `mark_requested` (the analysis did not start after all)."""
    if previous is None:
        ResultsLayout(Path(results_dir)).analysis_status.unlink(missing_ok=True)
    else:
        write_status(Path(results_dir), previous)
