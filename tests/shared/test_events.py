import json

import pytest

from evoprune.shared.events import (
    EvaluationFinished,
    EventBus,
    ExperimentCancelled,
    ExperimentEnded,
    ExperimentFailed,
    ExperimentStatus,
    ExperimentSucceeded,
    FrontChanged,
    RunFinished,
    StatusChanged,
    event_from_dict,
)
from evoprune.shared.pareto import ParetoArchive

EXAMPLES = [
    EvaluationFinished(
        run=1, step=3, mask="ff00", objectives=(0.9, 0.5, 0.8), cached=False, seconds=1.5, worker="w0"
    ),
    FrontChanged(
        run=-1,
        points=((0.9, 0.5, 0.8), (0.8, 0.2, 0.7)),
        masks=("ff00", "0f00"),
        hypervolume=0.3,
        evaluations=32,
    ),
    RunFinished(run=0, hypervolume=0.4, evaluations=200, cache_hits=7),
    ExperimentSucceeded(hypervolume=0.5, evaluations=2000, cache_hits=70, seconds=12.0, results_dir="/tmp/x"),
    ExperimentFailed(message="worker pool lost"),
    ExperimentCancelled(evaluations=12, results_dir="/tmp/y"),
    StatusChanged(status=ExperimentStatus.RUNNING, started_at=1.0, mask_length=64),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.kind)
def test_round_trip_through_json(event):
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == event.kind
    assert event_from_dict(data) == event


def test_events_are_frozen():
    with pytest.raises(AttributeError):
        EXAMPLES[0].run = 2  # type: ignore[misc]


def test_unknown_or_incomplete_events_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_dict({"type": "nope"})
    with pytest.raises(ValueError, match="run-finished"):
        event_from_dict({"type": "run-finished", "run": 1})


def test_bus_delivers_in_order_and_unsubscribes():
    bus = EventBus()
    seen_a, seen_b = [], []
    unsubscribe_a = bus.subscribe(seen_a.append)
    bus.subscribe(seen_b.append)
    bus.emit(EXAMPLES[0])
    unsubscribe_a()
    bus.emit(EXAMPLES[1])
    assert seen_a == [EXAMPLES[0]]
    assert seen_b == EXAMPLES[:2]


def test_one_name_per_state():
    ended = [event for event in EXAMPLES if isinstance(event, ExperimentEnded)]
    # the event that ends an experiment is named after the state it ends in
    assert {event.kind.value for event in ended} == {event.status.value for event in ended}
    assert {status for status in ExperimentStatus if status.terminal} == {event.status for event in ended}
    assert event_from_dict({"type": "status", "status": "running"}).status is ExperimentStatus.RUNNING
    with pytest.raises(ValueError):
        event_from_dict({"type": "status", "status": "finished"})


def test_a_front_event_holds_objectives_not_the_minimisation_vector():
    archive = ParetoArchive()
    archive.add([[0.1, 0.5, 0.2]], ["ff"])
    event = FrontChanged.of_archive(-1, archive, evaluations=3)
    assert event.points == (pytest.approx((0.9, 0.5, 0.8)),) and event.masks == ("ff",)
    assert event.hypervolume == archive.hypervolume and event.evaluations == 3
