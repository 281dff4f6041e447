"""The service's jobs on a finished experiment (analysis, export): kinds, specs, status files, lost rule."""

from __future__ import annotations

import abc
import enum
import json
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Generic, Self, TypeVar

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.storage import StoragePath

# A "running" status whose actor cannot be found is only declared lost after this long: the API writes the
# status just before it creates the actor, and a reader may look in between.
LOST_AFTER_S = 60.0
WAITING_STAGE = "waiting for its actor on the Ray node that holds the results"

SpecT = TypeVar("SpecT", bound="JobSpec")
StateT = TypeVar("StateT", bound="JobState")


class JobStatus(enum.StrEnum):
    """The states of a job, as its status file and the API name them."""

    NONE = "none"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobBusyError(Exception):
    """A job of this kind is already running for the experiment (its actor exists)."""


class JobRefusedError(Exception):
    """The experiment cannot have this job now (not succeeded, unusable results, or one is running)."""


class JobUnavailableError(Exception):
    """The job could not be started: its results directory or the Ray cluster failed."""


@dataclass(frozen=True)
class JobState:
    """Where a job stands: its status file, typed; a kind adds the fields of its request and outcome.

    Fields left None are not written, and a field of the wrong type in a file reads as None, so a status
    file written by an older or newer version still opens.
    """

    status: JobStatus
    stage: str | None = None  # what a running job is doing
    error: str | None = None  # why a failed job failed
    requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def to_json(self) -> str:
        """The status file's text."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        return json.dumps({key: value for key, value in values.items() if value is not None})

    def with_outcome(self, outcome: Mapping[str, object]) -> Self:
        """The state with a finished job's outcome, whose keys are fields of the kind's state.

        Raises:
            TypeError: a key that is no field of the state, or a value of another type than the field's.

        """
        hints = typing.get_type_hints(type(self))
        known = {item.name for item in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in outcome.items():
            if name not in known or (value is not None and _typed(hints[name], value) is None):
                raise TypeError(f"{type(self).__name__} has no field {name!r} of the type of {value!r}")
            changes[name] = value
        return replace(self, **changes)

    @classmethod
    def from_json(cls, text: str) -> Self | None:
        """A status file's state, or None when the text is no status file (not JSON, no known status)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("status") not in set(JobStatus):
            return None
        hints = typing.get_type_hints(cls)
        names = [item.name for item in fields(cls) if item.name != "status"]
        values = {name: _typed(hints[name], data.get(name)) for name in names}
        return cls(JobStatus(data["status"]), **values)


def _typed(hint: Any, value: Any) -> Any:
    """`value` if it has the type that `hint` (`X | None`) names, else None."""
    (expected,) = [kind for kind in typing.get_args(hint) if kind is not types.NoneType] or [hint]
    expected = typing.get_origin(expected) or expected
    if isinstance(value, bool) and expected is not bool:
        return None  # JSON's true is no number
    if expected is float:
        return float(value) if isinstance(value, int | float) else None
    return value if isinstance(value, expected) else None


def _nothing_written(results_dir: StoragePath) -> bool:
    return False


@dataclass(frozen=True, eq=False)
class JobKind(Generic[SpecT, StateT]):
    """One kind of job: its words, its status file, its actor's name and the work it plugs in."""

    noun: str  # "analysis": what the log and the messages call one job
    a_job: str  # "an analysis"
    participle: str  # "analysed": "only a succeeded experiment can be analysed"
    state_type: type[StateT]
    status_path: Callable[[ResultsLayout[StoragePath]], StoragePath]
    actor_name: Callable[[str], str]
    # does the job, telling each stage to the callable; returns the outcome's fields of `state_type`
    work: Callable[[SpecT, Callable[[str], None]], Mapping[str, object]]
    # the texts the API has always answered when one is running, and when its actor has not yet ended
    running_advice: str = "wait for it"
    busy_reason: str = "still finishing"
    # failures the work foresees: their message alone is the error, without a traceback in the log
    expected_errors: tuple[type[Exception], ...] = ()
    # with no status file: whether the results show a job finished outside the service (`evoprune analyze`)
    finished_without_status: Callable[[StoragePath], bool] = _nothing_written
    # one start at a time in this process, so two requests cannot both find no job running
    starting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status_file(self, results_dir: StoragePath) -> StoragePath:
        """Where this kind keeps its status in a results directory (local, or on object storage)."""
        layout: ResultsLayout[StoragePath] = ResultsLayout(results_dir)
        return self.status_path(layout)


@dataclass(frozen=True)
class JobSpec(abc.ABC):
    """What one job needs, picklable: which experiment, where its results are; a kind adds its options."""

    job_kind: ClassVar[JobKind[Any, Any]]
    experiment_id: str
    results_dir: str

    @abc.abstractmethod
    def request_state(self) -> JobState:
        """The kind's state holding this request's fields (status none), as its status file reports them."""


def read_state(kind: JobKind[Any, StateT], results_dir: StoragePath) -> StateT | None:
    """The job's status file, or None when there is none (or it is unreadable)."""
    try:
        text = kind.status_file(results_dir).read_text(encoding="utf-8")
    except OSError:
        return None
    return kind.state_type.from_json(text)


def write_state(kind: JobKind[Any, Any], results_dir: StoragePath, state: JobState) -> None:
    """Replace the job's status file atomically (readers see the old or the new one, never a mix)."""
    write_atomic(kind.status_file(results_dir), state.to_json())


def read_status_text(kind: JobKind[Any, Any], results_dir: StoragePath) -> str | None:
    """The status file's text as it is, to put back with `restore_status_text`; None when there is none."""
    try:
        return kind.status_file(results_dir).read_text(encoding="utf-8")
    except OSError:  # none, or unreadable: the request's own write will say what is wrong
        return None


def restore_status_text(kind: JobKind[Any, Any], results_dir: StoragePath, previous: str | None) -> None:
    """Put the status file back as `read_status_text` found it (the job did not start after all)."""
    if previous is None:
        kind.status_file(results_dir).unlink(missing_ok=True)
    else:
        write_atomic(kind.status_file(results_dir), previous)


def waiting_state(spec: JobSpec, now: float | None = None) -> JobState:
    """The status of a job about to be started: running, waiting for its actor, which takes over from there.

    Args:
        spec: the job.
        now: the request time (tests); default time.time().

    Returns:
        The state to write.

    """
    return replace(
        spec.request_state(),
        status=JobStatus.RUNNING,
        stage=WAITING_STAGE,
        requested_at=time.time() if now is None else now,
    )


def may_be_lost(state: JobState, now: float) -> bool:
    """Whether a running job is old enough that its missing actor means it died, not that it is starting."""
    since = state.requested_at if state.requested_at is not None else state.started_at
    return since is None or now - since >= LOST_AFTER_S


def job_state(
    kind: JobKind[Any, StateT], results_dir: StoragePath, alive: Callable[[], bool], now: float | None = None
) -> StateT:
    """Decide where a job stands from its status file and whether its actor exists.

    Args:
        kind: which job.
        results_dir: the experiment's results directory.
        alive: whether the job's actor exists; only asked about a status that says running.
        now: the current time (tests); default time.time().

    Returns:
        running/succeeded/failed as the status file says, except that a running job whose actor has been
        gone for a while (its process died) is failed; with no status file, succeeded when the kind finds
        its results written outside the service, else none.

    """
    state = read_state(kind, results_dir)
    if state is None:
        done = kind.finished_without_status(results_dir)
        return kind.state_type(status=JobStatus.SUCCEEDED if done else JobStatus.NONE)
    if state.status != JobStatus.RUNNING or not may_be_lost(state, time.time() if now is None else now):
        return state
    if alive():
        return state
    return replace(
        state,
        status=JobStatus.FAILED,
        stage=None,
        error=f"the {kind.noun} stopped without finishing: its Ray actor is gone (the process or its node "
        "died); start it again",
    )
