"""Routes of an experiment's results: its fronts, its evaluations (JSON or Parquet) and its event stream."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal, TypedDict, cast

import anyio
import pyarrow.parquet as pq
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from evoprune.api.http._sse import EventStream
from evoprune.api.http.deps import (
    PROTECTED_RESPONSES,
    Authorized,
    RecordDep,
    ResponsesDep,
    StoreDep,
    results_unreachable,
)
from evoprune.api.http.schemas import EvaluationList, EvaluationPublic, FrontPublic
from evoprune.coordinator.results.layout import results_layout
from evoprune.coordinator.results.writer import COLUMN_TYPES, EVALUATION_COLUMNS, rows_table
from evoprune.shared.evaluation_row import EvaluationRowRecord
from evoprune.shared.events import EvaluationFinished, event_from_dict
from evoprune.shared.parquet_files import CorruptFileError, read_verified_parquet
from evoprune.shared.store import ExperimentRecord, Store

PARQUET = "application/vnd.apache.parquet"
MAX_PAGE = 10_000
EVENT_BATCH = 5000

router = APIRouter(
    prefix="/experiments", tags=["results"], dependencies=[Authorized], responses=PROTECTED_RESPONSES
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown id"}}


@router.get("/{experiment_id}/front", response_model=FrontPublic, responses=NOT_FOUND)
async def get_front(
    record: RecordDep,
    store: StoreDep,
    responses: ResponsesDep,
    run: Annotated[int | None, Query(ge=-1, le=1_000_000, description="one run only; -1 = all runs")] = None,
    kind: Annotated[
        Literal["population", "archive"],
        Query(
            description=(
                "population: the non-dominated members of each run's current (at the end: final) population, "
                "the paper's fronts; archive: the non-dominated set of all of a run's evaluations"
            )
        ),
    ] = "population",
) -> Response:
    """The current Pareto fronts: each run's and the aggregated one (run = -1), of one kind.

    With the aggregated archive front's hypervolume history, for drawing its curve.
    """

    def build() -> str:
        snapshot = store.snapshot(record.id)
        if snapshot is None:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no experiment {record.id!r}")
        if kind == "archive":
            # the record read first names the version; the snapshot's front is at least as new
            return FrontPublic.of(record, snapshot.front, run).model_dump_json()
        return FrontPublic.of_population(record, snapshot.front.history, run).model_dump_json()

    cached = responses.cached(record, ("front", run, kind))
    if cached is not None:
        return cached
    # building a front is milliseconds of parsing and validation: off the event loop
    return responses.json(record, ("front", run, kind), await anyio.to_thread.run_sync(build))


class EventEvaluation(TypedDict):
    """An evaluation read from the event stream: evaluations.parquet's first columns.

    Its mask length is the record's: None until the runner has set it.
    """

    run: int
    step: int
    mask: str
    mask_length: int | None
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str


# what the evaluations route serves: rows of evaluations.parquet, or of the event stream while it runs
ServedEvaluation = EvaluationRowRecord | EventEvaluation


def _from_events(store: Store, record: ExperimentRecord) -> list[ServedEvaluation]:
    rows: list[ServedEvaluation] = []
    after = 0
    while batch := store.read_events(record.id, after, EVENT_BATCH):
        after = batch[-1][0]
        for _, data in batch:
            event = event_from_dict(data)
            if isinstance(event, EvaluationFinished):
                accuracy, active_fraction, auroc = event.objectives
                rows.append(
                    {
                        "run": event.run,
                        "step": event.step,
                        "mask": event.mask,
                        "mask_length": record.mask_length,
                        "accuracy": accuracy,
                        "active_fraction": active_fraction,
                        "auroc": auroc,
                        "cached": event.cached,
                        "seconds": event.seconds,
                        "worker": event.worker,
                    }
                )
    # events arrive in completion order; a stable sort gives (run, step, position in step)
    return sorted(rows, key=lambda row: (row["run"], row["step"]))


def evaluation_rows(store: Store, record: ExperimentRecord) -> list[ServedEvaluation]:
    """Every evaluation of an experiment in (run, step, position) order.

    Args:
        store: the live view.
        record: the experiment.

    Returns:
        Rows as in evaluations.parquet: from that file once the experiment has ended (the source of
        truth), from the event stream while it runs.

    Raises:
        HTTPException: 500 naming the file when evaluations.parquet is damaged; 503 when it cannot be read
            now (its object storage did not answer).

    """
    path = results_layout(record.results_dir).evaluations
    try:
        if record.terminal and path.exists():
            # the file's columns are the record's (the runner wrote them)
            return cast(list[ServedEvaluation], read_verified_parquet(path).to_pylist())
    except CorruptFileError as error:
        raise HTTPException(
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
            # the client is told the file's name, not the server's path
            detail=f"experiment {record.id}: {str(error).replace(str(path), path.name)}; "
            "restore it from a backup or run the experiment again",
        ) from None
    except OSError as error:
        raise results_unreachable(record, error) from None
    return _from_events(store, record)


def _parquet(rows: list[ServedEvaluation]) -> bytes:
    columns = tuple(name for name in COLUMN_TYPES if name in rows[0]) if rows else EVALUATION_COLUMNS
    buffer = io.BytesIO()
    pq.write_table(rows_table(rows, columns), buffer)
    return buffer.getvalue()


@router.get(
    "/{experiment_id}/evaluations",
    response_model=EvaluationList,
    responses={
        **NOT_FOUND,
        500: {"description": "evaluations.parquet is damaged; the message names it and what to do"},
        200: {
            "description": f"JSON, or Parquet with `Accept: {PARQUET}` or `?format=parquet`",
            "content": {PARQUET: {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
def get_evaluations(
    record: RecordDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    run: Annotated[int | None, Query(ge=0, le=1_000_000, description="one run only")] = None,
    response_format: Annotated[Literal["json", "parquet"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """The evaluations so far, in (run, step, position in step) order."""
    rows = evaluation_rows(store, record)
    if run is not None:
        rows = [row for row in rows if row["run"] == run]
    page = rows[offset : offset + limit]
    wants_parquet = response_format == "parquet" or (
        response_format is None and accept is not None and PARQUET in accept
    )
    if wants_parquet:
        return Response(
            _parquet(page),
            media_type=PARQUET,
            headers={"Content-Disposition": f'attachment; filename="{record.id}-evaluations.parquet"'},
        )
    return EvaluationList(
        evaluations=[EvaluationPublic(**row) for row in page], total=len(rows), offset=offset, limit=limit
    )


@router.get(
    "/{experiment_id}/events",
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        400: {"description": "Last-Event-ID is not an event id of this server"},
        200: {
            "description": "Server-Sent Events: `snapshot` (unless resuming), then `status`, `evaluation`, "
            "`front`, `run-finished`, and finally `done`; see the SnapshotEvent, EvaluationEvent, "
            "FrontEvent, RunFinishedEvent, StatusEvent and DoneEvent schemas",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def get_events(
    record: RecordDep,
    store: StoreDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    resume: Annotated[
        str | None, Query(alias="last_event_id", max_length=64, description="as the Last-Event-ID header")
    ] = None,
) -> StreamingResponse:
    """Follow an experiment live; reconnect with `Last-Event-ID` to continue without gaps or repeats."""
    text = last_event_id if last_event_id is not None else resume
    after = None
    if text is not None and text.strip():
        after = store.parse_event_id(text)
        if after is None:
            raise HTTPException(
                status_code=status.HTTP_400_BAD_REQUEST,
                detail=f"Last-Event-ID {text!r} is not an event id of this server (ids look like "
                f"{store.event_id(12)!r})",
            )
    stream = EventStream(store, record.id, after)
    return StreamingResponse(
        stream.messages(request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
