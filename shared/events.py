"""Typed events of an experiment, their dict form (for SSE and Redis Streams) and a synchronous bus."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

Objectives = tuple[float, float, float]


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it on the wire."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """Convert to a JSON-ready mapping with the event's kind under "type".

        Returns:
            Field values (tuples become lists) plus "type".

        """
        data: dict[str, Any] = {"type": self.kind}
        for item in dataclasses.fields(self):
            data[item.name] = _plain(getattr(self, item.name))
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


@dataclass(frozen=True)
class EvaluationFinished(Event):
    """One mask of one run has its objectives (accuracy, active_fraction, auroc)."""

    kind: ClassVar[str] = "evaluation"

    run: int
    step: int
    mask: str
    objectives: Objectives
    cached: bool
    seconds: float
    worker: str


@dataclass(frozen=True)
class FrontChanged(Event):
    """A run's Pareto front (run = -1: all runs together) gained or lost points."""

    kind: ClassVar[str] = "front"

    run: int
    points: tuple[Objectives, ...]
    masks: tuple[str, ...]
    hypervolume: float
    evaluations: int = 0


@dataclass(frozen=True)
class RunFinished(Event):
    """A run used its whole budget."""

    kind: ClassVar[str] = "run-finished"

    run: int
    hypervolume: float
    evaluations: int
    cache_hits: int


@dataclass(frozen=True)
class ExperimentFinished(Event):
    """Every run finished and the results are written."""

    kind: ClassVar[str] = "done"

    hypervolume: float
    evaluations: int
    cache_hits: int
    seconds: float = 0.0
    results_dir: str = ""


@dataclass(frozen=True)
class ExperimentFailed(Event):
    """The experiment stopped on an error; what is already checkpointed can be resumed."""

    kind: ClassVar[str] = "failed"

    message: str


@dataclass(frozen=True)
class ExperimentCancelled(Event):
    """The experiment was stopped on request; results so far are written and it can be resumed."""

    kind: ClassVar[str] = "cancelled"

    evaluations: int
    results_dir: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        EvaluationFinished,
        FrontChanged,
        RunFinished,
        ExperimentFinished,
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
