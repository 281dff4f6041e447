"""Analyses of the HTTP service: `evoprune analyze` in a detached Ray actor, its status in a small file."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from evoprune.coordinator.analysis_artifacts import ANALYSIS_DIR, INDEX_NAME
from evoprune.coordinator.analysis_inputs import AnalysisError
from evoprune.coordinator.checkpoint import write_atomic

ANALYSIS_ACTOR_PREFIX = "evoprune-analysis-"
# beside analysis/, not in it: publishing a new analysis swaps that folder whole
STATUS_FILE = "analysis-status.json"
STATUSES = ("none", "running", "succeeded", "failed")
DEFAULT_TOP = 10
DEFAULT_SAMPLES = 4
MAX_TOP = 50
MAX_SAMPLES = 16
# A "running" status whose actor cannot be found is only declared lost after this long: the API writes the
# status just before it creates the actor, and a reader may look in between.
LOST_AFTER_S = 60.0
# Re-training the front is TensorFlow work: a whole CPU, so it waits for a worker node rather than
# crowding the head or API node (which offer none on a cluster).
ANALYSIS_CPUS = 1.0
WAITING_STAGE = "waiting for a CPU on the Ray cluster"

log = logging.getLogger(__name__)


class AnalysisBusyError(Exception):
    """An analysis of this experiment is already running (its actor exists)."""


def analysis_actor_name(experiment_id: str) -> str:
    """The name of an experiment's analysis actor in the `evoprune` Ray namespace."""
    return ANALYSIS_ACTOR_PREFIX + experiment_id


@dataclass(frozen=True)
class AnalysisSpec:
    """What one analysis needs, picklable: which experiment, where its results are, and the options."""

    experiment_id: str
    results_dir: str
    top: int = DEFAULT_TOP
    samples: int = DEFAULT_SAMPLES


@dataclass(frozen=True)
class AnalysisState:
    """Where the analysis of an experiment stands, as the API reports it."""

    status: str  # none | running | succeeded | failed
    error: str | None = None
    stage: str | None = None  # what a running analysis is doing
    requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    top: int | None = None
    samples: int | None = None


def read_status(results_dir: Path) -> dict[str, Any] | None:
    """The analysis status file of a results directory, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(results_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in STATUSES else None


def write_status(results_dir: Path, state: dict[str, Any]) -> None:
    """Replace the analysis status file atomically (readers see the old or the new one, never a mix)."""
    write_atomic(Path(results_dir) / STATUS_FILE, json.dumps(state))


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
        return AnalysisState(status="succeeded" if indexed else "none")
    state = AnalysisState(
        status=str(data["status"]),
        error=_text(data.get("error")),
        stage=_text(data.get("stage")),
        requested_at=_number(data.get("requested_at")),
        started_at=_number(data.get("started_at")),
        finished_at=_number(data.get("finished_at")),
        top=_integer(data.get("top")),
        samples=_integer(data.get("samples")),
    )
    if state.status != "running":
        return state
    since = state.requested_at if state.requested_at is not None else state.started_at
    current = time.time() if now is None else now
    if since is not None and current - since < LOST_AFTER_S:
        return state
    if alive():
        return state
    return AnalysisState(
        status="failed",
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


def mark_requested(spec: AnalysisSpec, now: float | None = None) -> dict[str, Any]:
    """Write the status of an analysis about to be started; its actor takes over from there.

    Args:
        spec: the analysis.
        now: the request time (tests); default time.time().

    Returns:
        The status written.

    """
    state = {
        "status": "running",
        "stage": WAITING_STAGE,
        "requested_at": time.time() if now is None else now,
        "top": spec.top,
        "samples": spec.samples,
    }
    write_status(Path(spec.results_dir), state)
    return state


def restore_status(results_dir: Path, previous: dict[str, Any] | None) -> None:
    """Put back the status file as it was before `mark_requested` (the analysis did not start after all)."""
    if previous is None:
        (Path(results_dir) / STATUS_FILE).unlink(missing_ok=True)
    else:
        write_status(Path(results_dir), previous)


def run_analysis(spec: AnalysisSpec, analyze: Callable[..., dict[str, Any]] | None = None) -> str:
    """Analyse one finished experiment, keeping its status file current: stages, then the outcome.

    Args:
        spec: which results directory, and the options.
        analyze: `coordinator.analysis.analyze` or a stand-in with its signature (tests).

    Returns:
        The final status: succeeded or failed.

    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results_dir = Path(spec.results_dir)
    previous = read_status(results_dir) or {}
    base = {
        "requested_at": previous.get("requested_at", time.time()),
        "started_at": time.time(),
        "top": spec.top,
        "samples": spec.samples,
    }

    def report(**fields: Any) -> None:
        try:
            write_status(results_dir, {**base, **fields})
        except OSError as error:  # the outcome is still in analysis/ (or its absence); say why it is not here
            log.error("cannot write %s: %s", results_dir / STATUS_FILE, error)

    report(status="running", stage="starting")
    try:
        work = analyze if analyze is not None else _analyze()
        index = work(
            results_dir,
            top=spec.top,
            samples=spec.samples,
            log=lambda line: report(status="running", stage=line),
        )
    except AnalysisError as error:
        report(status="failed", error=" ".join(str(error).split()), finished_at=time.time())
        return "failed"
    except Exception as error:
        log.error("analysis of %s failed:\n%s", spec.experiment_id, traceback.format_exc())
        report(status="failed", error=f"{type(error).__name__}: {error}", finished_at=time.time())
        return "failed"
    report(status="succeeded", finished_at=time.time(), artifacts=len(index.get("artifacts", [])))
    return "succeeded"


def _analyze() -> Callable[..., dict[str, Any]]:
    # imported here: the analyses pull in TensorFlow, which only the actor's process should load
    from evoprune.coordinator.analysis import analyze

    return analyze


def end_this_actor() -> None:
    """End the calling detached actor for good once its work is done: a detached actor never exits alone."""
    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:  # leaving the process is the fallback of last resort
        os._exit(0)


class AnalysisRunner:
    """The body of the detached Ray actor that runs one analysis (see `ANALYSIS_ACTOR`).

    Like the experiment runner, the work runs on a thread started by the constructor, so it belongs to the
    actor alone and outlives the API process that asked for it; a finished runner removes itself.
    """

    def __init__(self, spec: AnalysisSpec) -> None:
        self.spec = spec
        self.status = "running"
        self._thread = threading.Thread(target=self._run, name=f"analysis-{spec.experiment_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = run_analysis(self.spec)
        finally:
            end_this_actor()

    def ping(self) -> str:
        """Answer whether the analysis is still going."""
        return self.status


# no restarts: a crashed analysis is reported failed (see analysis_state) and can simply be asked for again
ANALYSIS_ACTOR = ray.remote(num_cpus=ANALYSIS_CPUS, max_restarts=0, max_task_retries=0)(AnalysisRunner)
