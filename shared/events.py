"""Typed events of an experiment, the states they lead to, their wire form, and a synchronous bus."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from evoprune.shared.objectives import Objectives, objectives_of
from evoprune.shared.pareto import ParetoArchive


class ExperimentStatus(enum.StrEnum):
    """The states of an experiment: one name each, the same in records, events, checkpoints and HTTP."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the experiment has ended in this state."""
        return self in (ExperimentStatus.SUCCEEDED, ExperimentStatus.FAILED, ExperimentStatus.CANCELLED)


class EventKind(enum.StrEnum):
    """The name of each kind of event on the wire (the "type" of its dict form)."""

    EVALUATION = "evaluation"
    FRONT = "front"
    RUN_FINISHED = "run-finished"
    STATUS = "status"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it on the wire."""

    kind: ClassVar[EventKind]

    def to_dict(self) -> dict[str, Any]:
        """Convert to a JSON-ready mapping with the event's kind under "type".

        Returns:
            Field values (tuples become lists, enums their values) plus "type".

        """
        data: dict[str, Any] = {"type": self.kind.value}
        for item in dataclasses.fields(self):
            data[item.name] = _plain(getattr(self, item.name))
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


@dataclass(frozen=True)
class EvaluationFinished(Event):
    """One mask of one run has its objectives (accuracy, active_fraction, auroc).

    The counts are the experiment's after this evaluation; the publisher's live view fills them in.
    """

    kind: ClassVar[EventKind] = EventKind.EVALUATION

    run: int
    step: int
    mask: str
    objectives: Objectives
    cached: bool
    seconds: float
    worker: str
    evaluations_done: int = 0
    evaluations_total: int = 0
    fidelity: float = 1.0  # < 1: screened out at that fraction of max_epochs; its objectives are the budget's


@dataclass(frozen=True)
class FrontChanged(Event):
    """A run's Pareto front (run = -1: all runs together) gained or lost points."""

    kind: ClassVar[EventKind] = EventKind.FRONT

    run: int
    points: tuple[Objectives, ...]
    masks: tuple[str, ...]
    hypervolume: float
    evaluations: int = 0

    @classmethod
    def of_archive(cls, run: int, archive: ParetoArchive, evaluations: int) -> FrontChanged:
        """The event of an archive's current front.

        Args:
            run: the run (-1: all runs together).
            archive: its non-dominated points (minimisation space) labelled by mask.
            evaluations: evaluations behind it.

        Returns:
            The event, with points as (accuracy, active_fraction, auroc).

        """
        points = tuple(objectives_of(point) for point in np.asarray(archive.points).tolist())
        return cls(
            run=run,
            points=points,
            masks=tuple(archive.labels),
            hypervolume=archive.hypervolume,
            evaluations=evaluations,
        )


@dataclass(frozen=True)
class RunFinished(Event):
    """A run used its whole budget."""

    kind: ClassVar[EventKind] = EventKind.RUN_FINISHED

    run: int
    hypervolume: float
    evaluations: int
    cache_hits: int


@dataclass(frozen=True)
class StatusChanged(Event):
    """The service's runner took the experiment up (again), or learnt its mask length."""

    kind: ClassVar[EventKind] = EventKind.STATUS

    status: ExperimentStatus
    started_at: float | None = None
    mask_length: int | None = None

    def __post_init__(self) -> None:
        # the wire form carries the status's value; the event always holds the enum
        object.__setattr__(self, "status", ExperimentStatus(self.status))


@dataclass(frozen=True)
class ExperimentEnded(Event):
    """Base of the events that end an experiment; `status` is the state it ends in."""

    status: ClassVar[ExperimentStatus]


@dataclass(frozen=True)
class ExperimentSucceeded(ExperimentEnded):
    """Every run finished and the results are written."""

    kind: ClassVar[EventKind] = EventKind.SUCCEEDED
    status: ClassVar[ExperimentStatus] = ExperimentStatus.SUCCEEDED

    hypervolume: float
    evaluations: int
    cache_hits: int
    seconds: float = 0.0
    results_dir: str = ""


@dataclass(frozen=True)
class ExperimentFailed(ExperimentEnded):
    """The experiment stopped on an error; what is already checkpointed can be resumed."""

    kind: ClassVar[EventKind] = EventKind.FAILED
    status: ClassVar[ExperimentStatus] = ExperimentStatus.FAILED

    message: str


@dataclass(frozen=True)
class ExperimentCancelled(ExperimentEnded):
    """The experiment was stopped on request; results so far are written and it can be resumed."""

    kind: ClassVar[EventKind] = EventKind.CANCELLED
    status: ClassVar[ExperimentStatus] = ExperimentStatus.CANCELLED

    evaluations: int
    results_dir: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind.value: cls
    for cls in (
        EvaluationFinished,
        FrontChanged,
        RunFinished,
        StatusChanged,
        ExperimentSucceeded,
        ExperimentFailed,
        ExperimentCancelled,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuilds an event from its `to_dict` form.

    Args:
        data: a mapping with "type" and the event's fields.

    Returns:
        The typed event.

    Raises:
        ValueError: an unknown type or missing fields.

    """
    kind = data.get("type")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    names = [item.name for item in dataclasses.fields(cls)]
    try:
        return cls(**{name: _tuples(data[name]) for name in names if name in data})
    except TypeError as error:
        raise ValueError(f"event {kind!r}: {error}") from None


Subscriber = Callable[[Event], None]


@dataclass
class EventBus:
    """Delivers every emitted event to every subscriber, in order, on the emitting thread."""

    _subscribers: list[Subscriber] = field(default_factory=list)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber.

        Args:
            callback: called with each event.

        Returns:
            A function that removes the subscriber again.

        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Hands `event` to the subscribers; a subscriber's exception propagates to the emitter."""
        for callback in list(self._subscribers):
            callback(event)
