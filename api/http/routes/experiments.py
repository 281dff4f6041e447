"""Routes of the experiment resource: submit, list, read, cancel, remove."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from evoprune.api.http._config_input import ConfigInputError, resolve_config
from evoprune.api.http.deps import (
    PROTECTED_RESPONSES,
    Authorized,
    LauncherDep,
    RecordDep,
    ResponsesDep,
    SettingsDep,
    StoreDep,
)
from evoprune.api.http.schemas import ExperimentCreate, ExperimentCreated, ExperimentList, ExperimentPublic
from evoprune.coordinator.results.layout import results_layout
from evoprune.coordinator.service.jobs_analysis import ANALYSIS
from evoprune.coordinator.service.jobs_export import EXPORT
from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.records import (
    end_without_runner,
    lost_record_ids,
    new_record,
    remove_experiment,
    restore_lost_records,
    write_record_copy,
)
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import (
    ExperimentActiveError,
    ExperimentRecord,
    FrontState,
    Store,
    StoreSpec,
    TooManyActiveError,
)

ID_BYTES = 8
MAX_PAGE = 500

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/experiments", tags=["experiments"], dependencies=[Authorized], responses=PROTECTED_RESPONSES
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExperimentCreated,
    responses={
        400: {"description": "the body cannot be parsed (not UTF-8 JSON)"},
        413: {"description": "the body is over EVOPRUNE_MAX_BODY_BYTES"},
        422: {"description": "the config is invalid or over the server's limits; each item names the field"},
        429: {"description": "too many experiments are queued or running"},
        503: {"description": "the store or the Ray cluster is unavailable"},
    },
)
def create_experiment(
    body: ExperimentCreate,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    launcher: LauncherDep,
) -> ExperimentCreated:
    """Submit an experiment: its config as a mapping (`config`) or as YAML text (`config_yaml`).

    The experiment is queued at once and runs on the Ray cluster; follow it with
    `GET /experiments/{id}/events`.
    """
    try:
        config = resolve_config(body, settings)
    except ConfigInputError as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=error.detail) from None
    experiment_id = secrets.token_hex(ID_BYTES)
    record = new_record(experiment_id, config, settings.store_spec().results_root, name=body.name)
    try:
        # counted and created in one step: concurrent submissions cannot all slip under the cap
        store.create(record, max_active=settings.max_active_experiments)
    except TooManyActiveError as error:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{error.active} experiments are queued or running, the most this server allows "
            f"(EVOPRUNE_MAX_ACTIVE_EXPERIMENTS={settings.max_active_experiments}); try again later",
        ) from None
    # a copy beside the results: a store that loses the record before its runner reads it (Redis restarted
    # empty) gets it back from there, as it gets back the records of finished experiments
    write_record_copy(results_layout(record.results_dir), record, FrontState())
    _launch(store, launcher, record)
    response.headers["Location"] = f"/experiments/{experiment_id}"
    return ExperimentCreated(id=experiment_id)


def _launch(store: Store, launcher: Launcher, record: ExperimentRecord) -> None:
    try:
        launcher.launch(record)
    except Exception as error:  # whatever Ray raised, the experiment is marked failed
        log.exception("experiment %s could not be started", record.id)
        message = f"the experiment could not be started on Ray: {type(error).__name__}: {error}"
        end_without_runner(store, record, message)
        write_record_copy(results_layout(record.results_dir), record, FrontState())
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=message) from None


@router.get("", response_model=ExperimentList)
def list_experiments(
    store: StoreDep,
    settings: SettingsDep,
    status_filter: Annotated[
        ExperimentStatus | None,
        Query(alias="status", description="only experiments with this status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ExperimentList:
    """Experiments, newest first."""
    every = store.records()
    # after Redis restarted empty, finished experiments come back from their results directories here,
    # not only when each id is fetched
    lost = lost_record_ids({record.id for record in every}, settings.store_spec())
    if lost:
        for experiment_id in lost:
            restore_lost_records(store, settings.store_spec(), only=experiment_id)
        every = store.records()
    records = [r for r in every if status_filter is None or r.status == status_filter]
    page = records[offset : offset + limit]
    return ExperimentList(experiments=[ExperimentPublic.of(r) for r in page], total=len(records))


@router.get(
    "/{experiment_id}", response_model=ExperimentPublic, responses={404: {"description": "unknown id"}}
)
async def get_experiment(record: RecordDep, responses: ResponsesDep) -> Response:
    """An experiment's status, progress per run and hypervolume."""
    return responses.json(record, "experiment", lambda: ExperimentPublic.of(record).model_dump_json())


@router.delete(
    "/{experiment_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExperimentPublic,
    responses={
        204: {"description": "with `purge=true`: the ended experiment and its results are removed"},
        404: {"description": "unknown id"},
        409: {
            "description": "without `purge`: the experiment has already ended; with `purge=true`: it is "
            "queued or running, or an analysis or export of it is running"
        },
    },
)
def cancel_experiment(
    record: RecordDep,
    store: StoreDep,
    launcher: LauncherDep,
    settings: SettingsDep,
    purge: Annotated[
        bool,
        Query(
            description="remove an ended experiment for good, its record and its results directory, "
            "instead of cancelling a running one"
        ),
    ] = False,
) -> Response | ExperimentPublic:
    """Cancel an experiment: it stops at its next step, keeps its results so far and ends `cancelled`.

    With `purge=true`, remove an ended experiment (succeeded, failed or cancelled) instead: its record,
    events and results directory are deleted and the answer is 204. A queued or running one is refused
    (409): cancel it first, then purge it once it has ended.
    """
    if purge:
        _purge(record, store, launcher, settings.store_spec())
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    if record.terminal:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"experiment {record.id} has already ended ({record.status}); there is nothing to cancel "
            "(add ?purge=true to remove it and its results)",
        )
    store.request_cancel(record.id)
    try:
        alive = launcher.alive(record.id)
    except Exception:  # Ray unreachable: the flag is raised, the runner will see it
        alive = True
    if not alive:
        current = store.get(record.id)
        if current is not None and not current.terminal:
            record = end_without_runner(store, current)
    return ExperimentPublic.of(record)


def _purge(record: ExperimentRecord, store: Store, launcher: Launcher, spec: StoreSpec) -> None:
    def conflict(reason: str) -> HTTPException:
        return HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"experiment {record.id} {reason}; it is kept"
        )

    if not record.terminal:
        raise conflict(
            f"is {record.status}: cancel it first (DELETE without purge), then remove it once ended"
        )
    try:
        # a runner that published its end may still be writing its record copy, which would bring the
        # experiment back; a job writes into the results directory
        if launcher.alive(record.id):
            raise conflict("has ended but its runner is still finishing; try again in a few seconds")
        for kind in (ANALYSIS, EXPORT):
            if launcher.job_alive(kind, record.id):
                raise conflict(f"is being {kind.participle}; wait for {kind.a_job} to end")
    except HTTPException:
        raise
    except Exception as error:  # Ray unreachable: whether a runner or job still writes cannot be told
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"experiment {record.id} is kept: Ray cannot tell whether anything still writes its "
            f"results ({type(error).__name__}: {error}); try again when Ray answers",
        ) from None
    try:
        remove_experiment(store, spec, record.id)
    except ExperimentActiveError as error:
        raise conflict(f"is {error.status}") from None
    except OSError as error:
        log.error("cannot remove the results of experiment %s: %s", record.id, error)
        raise HTTPException(
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
            detail=f"the results directory of experiment {record.id} cannot be removed: "
            f"{error.strerror or error}; it is kept",
        ) from None
