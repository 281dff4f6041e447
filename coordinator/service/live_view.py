"""An experiment's record and fronts as the service shows them, kept current by its typed events."""

from __future__ import annotations

import copy
import dataclasses
import time

from evoprune.shared.events import (
    EvaluationFinished,
    Event,
    ExperimentEnded,
    ExperimentFailed,
    ExperimentSucceeded,
    FrontChanged,
    RunFinished,
    StatusChanged,
)
from evoprune.shared.store import ExperimentRecord, FrontState


class LiveView:
    """An experiment's record and fronts, kept current by applying its events in order."""

    def __init__(self, record: ExperimentRecord, front: FrontState) -> None:
        self.record = record
        self.front = front

    def apply(self, event: Event) -> Event:
        """Update the view with one event.

        Args:
            event: the experiment's next event.

        Returns:
            The event as it is published: an evaluation with the experiment's counts after it, a status
            with the start time and mask length the record now holds; any other event unchanged.

        """
        record = self.record
        if isinstance(event, StatusChanged):
            record.status = event.status
            record.started_at = event.started_at or record.started_at
            if event.mask_length is not None:
                record.mask_length = event.mask_length
            return dataclasses.replace(event, started_at=record.started_at, mask_length=record.mask_length)
        if isinstance(event, EvaluationFinished):
            run = record.runs[event.run]
            run.evaluations_done += 1
            run.cache_hits += bool(event.cached)
            record.evaluations_done += 1
            record.cache_hits += bool(event.cached)
            return dataclasses.replace(
                event, evaluations_done=record.evaluations_done, evaluations_total=record.evaluations_total
            )
        if isinstance(event, FrontChanged):
            self._apply_front(event)
        elif isinstance(event, RunFinished):
            run = record.runs[event.run]
            run.finished = True
            run.hypervolume = event.hypervolume
        elif isinstance(event, ExperimentEnded):
            record.status = event.status
            record.finished_at = time.time()
            if isinstance(event, ExperimentSucceeded):
                record.hypervolume = event.hypervolume
                record.cache_hits = event.cache_hits
            elif isinstance(event, ExperimentFailed):
                record.error = event.message
        return event

    def _apply_front(self, event: FrontChanged) -> None:
        self.front.fronts[event.run] = {
            "points": [list(point) for point in event.points],
            "masks": list(event.masks),
            "hypervolume": event.hypervolume,
            "evaluations": event.evaluations,
        }
        if event.run == -1:
            self.record.hypervolume = event.hypervolume
            history = self.front.history
            if history and history[-1][0] == event.evaluations:
                history.pop()
            history.append((int(event.evaluations), float(event.hypervolume)))
        else:
            self.record.runs[event.run].hypervolume = event.hypervolume
            # x = evaluations of all runs, the axis the aggregated curve and the live page use
            points = self.front.run_histories.setdefault(event.run, [])
            if points and points[-1][0] == self.record.evaluations_done:
                points.pop()
            points.append((self.record.evaluations_done, float(event.hypervolume)))

    def copies(self) -> tuple[ExperimentRecord, FrontState]:
        """Independent copies, safe to serialise on another thread."""
        return copy.deepcopy(self.record), self.front.copy()
