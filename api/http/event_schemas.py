"""The payloads of an experiment's Server-Sent Events, each built from the typed event it announces."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from evoprune.api.http.schemas import ExperimentPublic, FrontPoint, FrontPublic, front_points, utc_time
from evoprune.shared.events import (
    EvaluationFinished,
    ExperimentCancelled,
    ExperimentEnded,
    ExperimentFailed,
    ExperimentStatus,
    ExperimentSucceeded,
    FrontChanged,
    RunFinished,
    StatusChanged,
)
from evoprune.shared.store import ExperimentRecord


class SnapshotEvent(BaseModel):
    """`snapshot`: the state as of the message's id."""

    experiment: ExperimentPublic
    front: FrontPublic


class EvaluationEvent(BaseModel):
    """`evaluation`: one mask evaluated."""

    run: int
    step: int
    mask: str
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str
    evaluations_done: int
    evaluations_total: int
    fidelity: float = Field(
        default=1.0,
        description="1: the full protocol's objectives; < 1: screened out after that fraction of max_epochs",
    )

    @classmethod
    def of(cls, event: EvaluationFinished) -> EvaluationEvent:
        """The payload of an evaluation event."""
        accuracy, active_fraction, auroc = event.objectives
        return cls(
            run=event.run,
            step=event.step,
            mask=event.mask,
            accuracy=accuracy,
            active_fraction=active_fraction,
            auroc=auroc,
            cached=event.cached,
            seconds=event.seconds,
            worker=event.worker,
            evaluations_done=event.evaluations_done,
            evaluations_total=event.evaluations_total,
            fidelity=event.fidelity,
        )


class FrontEvent(BaseModel):
    """`front`: a run's whole new front (run = -1: all runs together)."""

    run: int
    points: list[FrontPoint]
    hypervolume: float
    evaluations: int

    @classmethod
    def of(cls, event: FrontChanged) -> FrontEvent:
        """The payload of a front event."""
        return cls(
            run=event.run,
            points=front_points(event.run, event.points, event.masks),
            hypervolume=event.hypervolume,
            evaluations=event.evaluations,
        )


class RunFinishedEvent(BaseModel):
    """`run-finished`: a run used its budget."""

    run: int
    hypervolume: float
    evaluations: int
    cache_hits: int

    @classmethod
    def of(cls, event: RunFinished) -> RunFinishedEvent:
        """The payload of a run-finished event."""
        return cls(
            run=event.run,
            hypervolume=event.hypervolume,
            evaluations=event.evaluations,
            cache_hits=event.cache_hits,
        )


class StatusEvent(BaseModel):
    """`status`: the experiment changed status (to running)."""

    status: ExperimentStatus
    started_at: datetime | None
    mask_length: int | None = Field(default=None, description="known once the features are loaded")

    @classmethod
    def of(cls, event: StatusChanged) -> StatusEvent:
        """The payload of a status event."""
        return cls(status=event.status, started_at=utc_time(event.started_at), mask_length=event.mask_length)


class DoneEvent(BaseModel):
    """`done`: the experiment ended; always the stream's last message."""

    status: ExperimentStatus
    hypervolume: float
    evaluations: int
    cache_hits: int
    seconds: float
    results_dir: str
    error: str | None

    @classmethod
    def of(cls, record: ExperimentRecord, ended: ExperimentEnded | None = None) -> DoneEvent:
        """The last message of an experiment's stream.

        Args:
            record: the experiment's record (its final one when it can be had).
            ended: the event that ended it, when the stream saw one; the record fills in the rest.

        Returns:
            The payload.

        """
        status = ended.status if ended is not None else record.status
        hypervolume, evaluations, cache_hits = record.hypervolume, record.evaluations_done, record.cache_hits
        seconds = None
        results_dir, error = record.results_dir, record.error
        if isinstance(ended, ExperimentSucceeded):
            hypervolume, evaluations, cache_hits = ended.hypervolume, ended.evaluations, ended.cache_hits
            seconds, results_dir = ended.seconds, ended.results_dir or results_dir
        elif isinstance(ended, ExperimentFailed):
            error = ended.message
        elif isinstance(ended, ExperimentCancelled):
            evaluations, results_dir = ended.evaluations, ended.results_dir or results_dir
        if seconds is None and record.started_at is not None and record.finished_at is not None:
            seconds = record.finished_at - record.started_at
        return cls(
            status=status,
            hypervolume=hypervolume,
            evaluations=evaluations,
            cache_hits=cache_hits,
            seconds=round(float(seconds or 0.0), 3),
            results_dir=results_dir,
            error=error,
        )


# the SSE payloads, added to the OpenAPI document's schemas (a streamed response names no model of its own)
SSE_PAYLOADS: dict[str, type[BaseModel]] = {
    "snapshot": SnapshotEvent,
    "status": StatusEvent,
    "evaluation": EvaluationEvent,
    "front": FrontEvent,
    "run-finished": RunFinishedEvent,
    "done": DoneEvent,
}
